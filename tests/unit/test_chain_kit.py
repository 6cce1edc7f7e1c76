"""The test kit with chains on, as a deployed orchestrator runs: one command for a linear saga,
a failure inside a chain retried by the orchestrator, a hang timed out, compensation in
reverse order; the same outcomes as with chains off."""

from __future__ import annotations

import pytest

from tasksaga.core import RetryPolicy
from tasksaga.core import messages as msg
from tasksaga.core.state import TaskStatus
from tasksaga.testing import SagaTestRun
from tests.unit.sagas import Req, linear


def _commands(run: SagaTestRun) -> list[tuple[str, int, list[str]]]:
    sent = []
    for record in run.bus.records():
        payload = run.codec.decode(record.value).payload
        if isinstance(payload, msg.ExecuteStep):
            sent.append((payload.step, payload.attempt, payload.then))
    return sent


def test_a_linear_saga_runs_on_one_command_with_chains_on() -> None:
    run = SagaTestRun(linear(4), chains=True)
    task = run.submit(Req())
    task.assert_completed()
    assert _commands(run) == [("S1", 1, ["S2", "S3", "S4"])]
    assert task.dispatched == [("S1", 1), ("S2", 1), ("S3", 1), ("S4", 1)]
    task.assert_audit_contains("step S3 started by the worker of step S2")


@pytest.mark.parametrize("chains", [True, False], ids=["chains", "no-chains"])
def test_a_failure_inside_a_chain_is_retried_and_the_chain_ends_there(chains: bool) -> None:
    run = SagaTestRun(linear(3, retry=RetryPolicy(max_retries=2, delay_ms=10)), chains=chains)
    run.faults.fail("S2", times=1)
    task = run.submit(Req())
    task.assert_completed()
    # S3 was the chain's: the orchestrator's own dispatch of it is attempt 2.
    s3_attempt = 2 if chains else 1
    assert task.dispatched == [("S1", 1), ("S2", 1), ("S2", 2), ("S3", s3_attempt)]
    commands = [c[:2] for c in _commands(run)]
    assert commands == ([("S1", 1), ("S2", 2), ("S3", 2)] if chains else
                        [("S1", 1), ("S2", 1), ("S2", 2), ("S3", 1)])
    if chains:  # the audit says why S3 starts at attempt 2
        task.assert_audit_contains(
            "step S3 dispatched to queue q (attempt 2); attempt 1 was its chain's, which "
            "stopped before it")


@pytest.mark.parametrize("chains", [True, False], ids=["chains", "no-chains"])
def test_a_hang_inside_a_chain_times_out_and_a_later_failure_compensates_in_reverse(
        chains: bool) -> None:
    run = SagaTestRun(linear(3, retry=RetryPolicy(max_retries=1, delay_ms=10)), chains=chains)
    run.faults.hang("S2", times=1)
    run.faults.fail("S3", retryable=False, times=None)
    task = run.submit(Req())
    task.assert_status(TaskStatus.FAILED)
    task.assert_compensated(["S2", "S1"])

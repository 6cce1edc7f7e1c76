"""Versioned definitions through the real orchestrator and worker (in process): a task is
decided, and its steps run, by the version it started with; a task whose version is gone is
parked, never dead-lettered, until an operator migrates or cancels it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasksaga.adapters.wire import Envelope
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.fingerprint import fingerprint
from tasksaga.core.registry import TaskRegistry
from tasksaga.core.state import StepStatus, TaskState, TaskStatus, fold
from tasksaga.orchestrator.versioning import VersionRouter
from tasksaga.testing import SagaTestRun
from tasksaga.testing.harness import _codec
from tests.unit.versioned_sagas import RAN, Order, billing


@pytest.fixture(autouse=True)
def _fresh_log() -> Iterator[None]:
    RAN.clear()
    yield
    RAN.clear()


def test_a_task_started_on_version_1_finishes_on_version_1_after_version_2_is_deployed() -> None:
    v1, v2 = billing(1), billing(2, reserve_name="Hold")
    run = SagaTestRun(v1)
    run.faults.during("Charge", lambda ctx: run.deploy(v2) if ctx.attempt == 1 and
                      ctx.task_id == "old" else None)
    old = run.submit(Order(), task_id="old")
    new = run.submit(Order(), task_id="new")
    old.assert_completed()
    new.assert_completed()
    submitted = next(e for e in old.events if isinstance(e, ev.TaskSubmitted))
    assert (submitted.definition_version, submitted.definition_fingerprint) == (1, fingerprint(v1))
    assert old.state.definition_version == 1 and new.state.definition_version == 2
    assert RAN == ["v1:Reserve", "v1:Charge", "v1:Ship", "v2:Hold", "v2:Charge", "v2:Ship"]


def test_a_step_renamed_in_version_2_is_still_compensated_for_a_running_version_1_task() -> None:
    # The strand of issue 9: v2 renames Reserve, which v1's running task completed; a later
    # step fails. Deciding with v2 raised KeyError in advance_compensation, five times, then
    # the message was dead-lettered and the task stuck. Decided by v1, it is compensated.
    run = SagaTestRun(billing(1))
    run.faults.during("Charge", lambda ctx: run.deploy(billing(2, reserve_name="Hold")))
    run.faults.fail("Charge", retryable=False)
    task = run.submit(Order())
    task.assert_status(TaskStatus.FAILED)
    task.assert_compensated(["Reserve"])
    assert RAN[-1] == "v1:undo Reserve (done by v1)"


def parked_run() -> SagaTestRun:
    """A v1 task whose Charge result comes back after v1 was taken out of the deployment."""
    run = SagaTestRun(billing(1), billing(2, reserve_name="Hold"))
    run.retire("Billing", 2)  # the task starts on v1 (newest deployed), v2 comes back later

    def swap(ctx: object) -> None:
        run.deploy(billing(2, reserve_name="Hold"))
        run.retire("Billing", 1)

    run.faults.during("Charge", swap)
    run.submit(Order())
    return run


def test_a_result_for_an_undeployed_version_parks_the_task_with_its_version() -> None:
    run = parked_run()
    task = run.task()
    task.assert_status(TaskStatus.VERSION_MISSING)
    missing = [e for e in task.events if isinstance(e, ev.TaskVersionMissing)]
    assert [(m.definition_version, m.deployed_versions) for m in missing] == [(1, [2])]
    # Charge's success is kept, not failed five times and dead-lettered.
    assert [e.message_type for e in task.events if isinstance(e, ev.MessageParked)] == [
        "StepSucceeded"]
    task.assert_audit_contains("parked: version 1 of the task's definition is not deployed "
                               "(deployed: [2])")


def test_deploying_the_version_again_and_migrating_to_it_resumes_the_parked_task() -> None:
    run = parked_run()
    run.deploy(billing(1))
    run.migrate(to_version=1)
    task = run.task()
    task.assert_completed()
    assert task.state.definition_version == 1
    assert [e.to_version for e in task.events if isinstance(e, ev.TaskMigrated)] == [1]


def test_a_parked_task_migrates_to_a_version_that_only_changes_a_retry_policy() -> None:
    run = parked_run()
    run.deploy(billing(3, charge_retries=2))
    run.migrate(to_version=3)
    task = run.task()
    task.assert_completed()
    assert task.state.definition_version == 3
    # The parked success of v1's Charge completed the step; what follows runs on v3.
    assert RAN[-2:] == ["v1:Charge", "v3:Ship"]


def test_a_migration_to_a_version_without_a_recorded_step_is_refused_with_the_reason() -> None:
    run = parked_run()
    run.migrate(to_version=2)
    task = run.task()
    task.assert_status(TaskStatus.VERSION_MISSING)
    refused = [e for e in task.events if isinstance(e, ev.MigrationRefused)]
    assert len(refused) == 1 and refused[0].to_version == 2
    assert "step 'Reserve', recorded in the task, is not in Billing version 2" in refused[0].reason


def test_a_migration_to_a_version_adding_a_step_before_the_progress_is_refused() -> None:
    run = parked_run()
    run.deploy(billing(4, extra_step=True))
    run.migrate(to_version=4)
    refused = [e for e in run.task().events if isinstance(e, ev.MigrationRefused)]
    assert "adds steps ['Audit'] at or before the task's progress" in refused[0].reason


def test_cancelling_a_parked_task_without_its_compensations_deployed_says_so() -> None:
    run = parked_run()
    run.cancel()
    task = run.task()
    task.assert_status(TaskStatus.VERSION_MISSING)
    refused = [e for e in task.events if isinstance(e, ev.MigrationRefused)]
    assert "cannot cancel: no deployed version of Billing ([2])" in refused[0].reason
    assert task.step_status("Reserve") is StepStatus.COMPLETED  # nothing undone blindly


def test_cancelling_a_parked_task_compensates_it_on_a_compatible_deployed_version() -> None:
    run = parked_run()
    run.deploy(billing(3, charge_retries=2))
    run.cancel()
    run.run_until_settled()
    task = run.task()
    task.assert_status(TaskStatus.CANCELLED)
    task.assert_compensated(["Reserve"])
    assert RAN[-1] == "v3:undo Reserve (done by v1)"


@pytest.mark.parametrize(("asked", "started"), [(1, 1), (0, 2), (7, 2)],
                         ids=["the API's version", "unversioned API", "not deployed here"])
def test_a_submission_starts_on_the_version_the_api_validated_it_with(asked: int,
                                                                     started: int) -> None:
    router = VersionRouter(TaskRegistry([billing(1), billing(2, reserve_name="Hold")]),
                           _codec(), lambda: 0.0)
    submit = msg.SubmitTask("t", "Billing", Order().model_dump_json(), None, None, 1,
                            definition_version=asked)
    decision = router.decide_message(TaskState(), submit, None, 1)
    submitted = decision.events[0]
    assert isinstance(submitted, ev.TaskSubmitted) and submitted.definition_version == started
    assert isinstance(decision.commands[0], msg.ExecuteStep)
    assert decision.commands[0].definition_version == started


class _Gauge:
    def __init__(self) -> None:
        self.changes: list[tuple[int, dict[str, str]]] = []

    def add(self, amount: int, attributes: dict[str, str]) -> None:
        self.changes.append((amount, attributes))


def test_the_parked_gauge_counts_a_task_once_and_releases_it_when_it_resumes() -> None:
    codec = _codec()
    state = fold([ev.TaskSubmitted("t", "Billing", Order().model_dump_json(), None, None, 1,
                                   None),
                  ev.StepDispatched("Reserve", 1, "billing", 1, 2, 2)])
    gauge = _Gauge()
    router = VersionRouter(TaskRegistry([billing(2, reserve_name="Hold")]), codec,
                           lambda: 0.0, gauge)
    for attempt in (1, 2):  # two results while parked: the task is counted once
        result = msg.StepSucceeded("t", "Reserve", attempt, '{"by": "v1"}', 2)
        envelope = Envelope(result, f"r{attempt}", "t", "t", None, 1)
        state = router.decide(state, result, envelope, 5).state
    assert state.status is TaskStatus.VERSION_MISSING and len(state.parked) == 2
    assert gauge.changes == [(1, {"task_type": "Billing", "version": "1"})]
    resumed = VersionRouter(TaskRegistry([billing(1)]), codec, lambda: 0.0, gauge)
    state = resumed.decide(state, msg.MigrateTask("t", 1, 6), None, 6).state
    assert gauge.changes[-1] == (-1, {"task_type": "Billing", "version": "1"})
    assert state.step("Reserve").status is StepStatus.COMPLETED  # the kept result, decided

"""A worker runs a command's chain: each step once, in order, each result saying whether the
next started; it stops at a failure, a cancellation or a revoked partition, and a redelivered
chain resumes after the steps the projections show succeeded (StepRunner, in-memory bus)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_parallel import Lease
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.core import NonRetryableError, TaskDefinition
from tasksaga.core import messages as msg
from tasksaga.core.registry import TaskRegistry
from tasksaga.testing import InMemoryBus
from tasksaga.worker.cancellation import CancellationBook
from tasksaga.worker.finished_steps import ChainResume, StepRecord, resume_chain
from tasksaga.worker.runner import StepRunner

NOW_MS = 1_700_000_000_000
TOPICS = Topics("chain")


class Req(BaseModel):
    fail_at: str = ""


class Out(BaseModel):
    seen: list[str]


task = TaskDefinition("Chain", queue="q", request=Req)
ran: list[tuple[str, str, int, int, list[str]]] = []
cancellations = CancellationBook()


def _handler(name: str) -> Any:
    def run(ctx: Any) -> Out:
        ran.append((ctx.task_id, name, ctx.attempt, ctx.fencing_token, sorted(ctx.step_data_json)))
        if ctx.request.fail_at == name:
            raise NonRetryableError(f"{name} refuses")
        if ctx.request.fail_at == f"cancel-{name}":  # the cancel arrives; the step finishes
            cancellations.cancel((ctx.task_id, name, ctx.attempt))
        return Out(seen=sorted(ctx.step_data_json))
    return run


for order, step_name in enumerate(("A", "B", "C"), 1):
    task.step(step_name, order=order, data=Out, reads=None if step_name != "B" else ("A",))(
        _handler(step_name))


def _envelope(task_id: str, fail_at: str = "", then: list[str] | None = None) -> Envelope:
    command = msg.ExecuteStep(task_id, "Chain", "A", 1, "q", Req(fail_at=fail_at)
                              .model_dump_json(), {"Earlier": "{}"}, f"{task_id}:A:1", 10**13,
                              fencing_token=7, then=["B", "C"] if then is None else then)
    return Envelope(payload=command, message_id=f"cmd-{task_id}", task_id=task_id,
                    correlation_id=task_id, causation_id=None, occurred_at_ms=NOW_MS,
                    task_type="Chain")


def _runner(bus: InMemoryBus, finished: Any = None) -> StepRunner:
    return StepRunner(TaskRegistry([task]), None, bus, AvroCodec(), TOPICS, cancellations,
                      lambda: NOW_MS, finished=finished)


def _results(bus: InMemoryBus) -> list[Envelope]:
    codec = AvroCodec()
    decoded = [codec.decode(r.value) for r in bus.records(TOPICS.step_results)]
    return [e for e in decoded if not isinstance(e.payload, msg.StepHeartbeat)]


def _outcomes(bus: InMemoryBus) -> list[tuple[str, str, str]]:
    outcomes = []
    for envelope in _results(bus):
        result = envelope.payload
        if isinstance(result, msg.StepSucceeded):
            outcomes.append((result.step, "ok", result.started_next))
        elif isinstance(result, msg.StepAttemptFailed):
            outcomes.append((result.step, result.error_type, ""))
    return outcomes


def test_a_chain_runs_each_step_once_in_order_under_the_commands_lease() -> None:
    bus, ran[:] = InMemoryBus(), []
    assert _runner(bus).handle(_envelope("t1"), Lease("q", 0, 0, inherited=False))
    assert [(name, attempt, token) for _, name, attempt, token, _ in ran] == [
        ("A", 1, 7), ("B", 1, 7), ("C", 1, 7)]
    assert _outcomes(bus) == [("A", "ok", "B"), ("B", "ok", "C"), ("C", "ok", "")]
    # Each step reads what it declares: B only A's data, C everything so far.
    assert [seen for *_, seen in ran] == [["Earlier"], ["A"], ["A", "B", "Earlier"]]
    ids = [e.message_id for e in _results(bus)]
    assert ids == ["cmd-t1:result", "cmd-t1:B:result", "cmd-t1:C:result"]  # stable: deduped


def test_a_failure_ends_the_chain_and_the_command_is_done() -> None:
    bus, ran[:] = InMemoryBus(), []
    assert _runner(bus).handle(_envelope("t2", fail_at="B"), Lease("q", 0, 0, inherited=False))
    assert _outcomes(bus) == [("A", "ok", "B"), ("B", "NonRetryableError", "")]
    assert [name for _, name, *_ in ran] == ["A", "B"]


def test_a_step_whose_cancellation_was_asked_starts_nothing_after_it() -> None:
    bus, ran[:] = InMemoryBus(), []
    assert _runner(bus).handle(_envelope("t3", fail_at="cancel-A"),
                               Lease("q", 0, 0, inherited=False))
    assert _outcomes(bus) == [("A", "ok", "")]  # its success stands; nothing more runs
    assert [name for _, name, *_ in ran] == ["A"]


def test_a_revoked_partition_stops_the_chain_unanswered_and_uncommitted() -> None:
    bus, ran[:] = InMemoryBus(), []
    lease = Lease("q", 0, 0, inherited=False)
    original = task.get_step("B").handler
    assert original is not None

    def revoke_then_run(ctx: Any) -> Any:
        lease.revoke()
        return original(ctx)
    task.get_step("B").handler = revoke_then_run
    try:
        assert not _runner(bus).handle(_envelope("t4"), lease)
    finally:
        task.get_step("B").handler = original
    assert _outcomes(bus) == [("A", "ok", "B")]  # B's new owner resumes the chain at B


class Projected:
    def __init__(self, resume: ChainResume) -> None:
        self.resume = resume

    def why_finished(self, command: msg.ExecuteStep | msg.CompensateStep) -> str | None:
        raise AssertionError("a chain's command asks resume_chain")

    def resume_chain(self, command: msg.ExecuteStep) -> ChainResume:
        return self.resume


def test_a_redelivered_chain_resumes_after_the_steps_that_succeeded() -> None:
    bus, ran[:] = InMemoryBus(), []
    runner = _runner(bus, Projected(ChainResume(1, {"A": Out(seen=[]).model_dump_json()})))
    assert runner.handle(_envelope("t5"), Lease("q", 0, 0, inherited=True))
    assert [name for _, name, *_ in ran] == ["B", "C"]  # A is not run again
    assert _outcomes(bus) == [("B", "ok", "C"), ("C", "ok", "")]
    assert [seen for *_, seen in ran] == [["A"], ["A", "B", "Earlier"]]


def test_a_redelivered_chain_with_nothing_left_is_skipped() -> None:
    bus, ran[:] = InMemoryBus(), []
    runner = _runner(bus, Projected(ChainResume(None, reason="every step has its result")))
    assert runner.handle(_envelope("t6"), Lease("q", 0, 0, inherited=True))
    assert ran == [] and runner.skipped == 1 and _outcomes(bus) == []


def _command() -> msg.ExecuteStep:
    payload = _envelope("t7").payload
    assert isinstance(payload, msg.ExecuteStep)
    return payload


def test_the_resume_rule_skips_successes_and_stops_at_failures_or_newer_attempts() -> None:
    ok = StepRecord("Completed", 1, data_json="{}")
    command = _command()
    assert resume_chain(command, None, {}).start == 0  # not projected yet: run it all
    assert resume_chain(command, "Running", {"A": StepRecord("Running", 1)}).start == 0
    after_a = resume_chain(command, "Running", {"A": ok})
    assert (after_a.start, after_a.data) == (1, {"A": "{}"})
    assert resume_chain(command, "Running", {"A": ok, "B": StepRecord("Running", 1)}).start == 1
    assert resume_chain(command, "Running", {"A": ok, "B": ok}).start == 2
    assert resume_chain(command, "Running", {"A": ok, "B": ok, "C": ok}).start is None
    failed = resume_chain(command, "Running", {"A": ok, "B": StepRecord("Failed", 1)})
    assert failed.start is None and "B" in failed.reason
    moved_on = resume_chain(command, "Running", {"A": ok, "B": StepRecord("Running", 2)})
    assert moved_on.start is None  # the orchestrator dispatched B itself
    assert resume_chain(command, "Running", {"A": StepRecord("RetryScheduled", 1)}).start is None
    assert resume_chain(command, "Completed", {"A": ok}).start is None


def test_a_refused_result_is_sent_again_before_the_next_and_the_order_holds() -> None:
    """The next step starts while its predecessor's result is in flight; that result is
    acknowledged (sent again if refused) before the next one is sent."""
    bus, ran[:] = InMemoryBus(), []
    runner = StepRunner(TaskRegistry([task]), None, bus, AvroCodec(), TOPICS, cancellations,
                        lambda: NOW_MS, start_report_delay_ms=60_000)  # no start reports
    bus.refuse_next(1)  # A's result: refused once by a broker outage
    assert runner.handle(_envelope("t8"), Lease("q", 0, 0, inherited=False))
    assert [name for _, name, *_ in ran] == ["A", "B", "C"]
    assert _outcomes(bus) == [("A", "ok", "B"), ("B", "ok", "C"), ("C", "ok", "")]
    assert runner.results.resends == 1

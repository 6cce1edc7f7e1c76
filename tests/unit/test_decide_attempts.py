"""Attempts that overlap: leases with fencing tokens, late successes, surplus effects, and
step commands that carry only the data their step reads (decide(), fake clock)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tasksaga.core import RetryPolicy
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.state import StepStatus, SurplusStatus, TaskStatus
from tests.unit.sagas import Data, Driver, Req, _noop, _undo, linear


def _retried_once() -> Driver:
    """S1's attempt 1 timed out and attempt 2 runs: two attempts that can both act."""
    d = Driver(linear(2, retry=RetryPolicy(max_retries=3, delay_ms=0)))
    d.submit()
    d.start("S1")
    d.advance(30_000)  # the step timeout
    d.fire_due()  # the retry
    assert d.state.step("S1").attempt == 2 and d.running() == ["S1"]
    return d


def _success(d: Driver, step: str, attempt: int, value: str, token: int = 0) -> msg.StepSucceeded:
    return msg.StepSucceeded(d.state.task_id, step, attempt, Data(value=value).model_dump_json(),
                             token)


def test_each_dispatch_holds_a_fencing_token_that_grows_with_every_dispatch() -> None:
    d = _retried_once()
    commands = [c for c in d.commands if isinstance(c, msg.ExecuteStep)]
    dispatched = [e for e in d.events if isinstance(e, ev.StepDispatched)]
    assert [c.fencing_token for c in commands] == [e.fencing_token for e in dispatched]
    assert 0 < commands[0].fencing_token < commands[1].fencing_token
    assert d.state.step("S1").fencing_token == commands[1].fencing_token


def test_results_and_heartbeats_under_a_stale_token_are_rejected() -> None:
    d = _retried_once()
    d.definition.get_step("S1").heartbeat_timeout_seconds = 10  # heartbeats move a deadline
    current = d.state.step("S1").fencing_token
    stale = current - 1
    assert d.send(msg.StepAttemptFailed("t1", "S1", 2, "Boom", "zombie", True, None,
                                        stale)).is_empty
    assert d.send(msg.StepHeartbeat("t1", "S1", 2, 0.5, "zombie", stale)).is_empty
    assert not d.send(msg.StepHeartbeat("t1", "S1", 2, 0.5, "owner", current)).is_empty
    d.send(_success(d, "S1", 2, "zombie", stale))  # not the holder's: surplus, not the data
    assert d.state.step("S1").status is StepStatus.RUNNING
    assert d.state.step("S1").surplus_of(2) is not None


def test_a_late_success_of_an_old_attempt_cancels_the_newer_running_attempt() -> None:
    d = _retried_once()
    d.send(_success(d, "S1", 1, "first"))
    assert d.state.step("S1").status is StepStatus.COMPLETED
    assert d.state.step("S1").attempt == 1
    cancels = [c for c in d.commands if isinstance(c, msg.CancelStep)]
    assert [(c.step, c.attempt) for c in cancels] == [("S1", 2)]
    assert d.dispatched() == ["S1", "S1", "S2"]  # the saga moves on


def test_a_newer_attempt_that_also_succeeds_has_its_own_effect_compensated() -> None:
    d = _retried_once()
    d.send(_success(d, "S1", 1, "first"))
    d.send(_success(d, "S1", 2, "second"))  # it finished before the cancellation reached it
    (surplus,) = [e for e in d.events if isinstance(e, ev.StepSurplusSucceeded)]
    assert (surplus.step, surplus.attempt, surplus.will_compensate) == ("S1", 2, True)
    (undo,) = [c for c in d.commands if isinstance(c, msg.CompensateStep)]
    assert undo.surplus_attempt == 2
    assert undo.step_data["S1"] == Data(value="second").model_dump_json()
    assert d.state.step("S1").data_json == Data(value="first").model_dump_json()  # unchanged
    d.send(msg.CompensationSucceeded("t1", "S1", undo.attempt, surplus_attempt=2))
    assert d.state.step("S1").surplus_of(2).status is SurplusStatus.COMPENSATED  # type: ignore[union-attr]
    assert d.state.step("S1").status is StepStatus.COMPLETED  # the kept effect stays
    assert d.succeed("S1", attempt=2).is_empty  # a duplicate of the surplus result


def test_a_success_after_the_task_ended_is_compensated_too() -> None:
    d = Driver(linear(1, retry=RetryPolicy(max_retries=3, delay_ms=0)))
    d.submit()
    d.start("S1")
    d.advance(30_000)
    d.fire_due()
    d.send(_success(d, "S1", 1, "first"))
    assert d.state.status is TaskStatus.COMPLETED
    d.send(_success(d, "S1", 2, "second"))
    assert [c.surplus_attempt for c in d.commands if isinstance(c, msg.CompensateStep)] == [2]
    assert d.state.status is TaskStatus.COMPLETED


def test_a_failing_surplus_compensation_is_retried_then_recorded_as_failed() -> None:
    task = linear(2, retry=RetryPolicy(max_retries=3, delay_ms=0))
    task.compensation_retry_policy("S1", RetryPolicy(max_retries=1, delay_ms=0))
    d = Driver(task)
    d.submit()
    d.start("S1")
    d.advance(30_000)
    d.fire_due()
    d.send(_success(d, "S1", 1, "first"))
    d.send(_success(d, "S1", 2, "second"))
    d.send(msg.CompensationAttemptFailed("t1", "S1", 1, "IOError", "disk", None, 2))
    retried = [c for c in d.commands if isinstance(c, msg.CompensateStep)]
    assert [(c.attempt, c.surplus_attempt) for c in retried] == [(1, 2), (2, 2)]
    d.send(msg.CompensationAttemptFailed("t1", "S1", 2, "IOError", "disk", None, 2))
    failed = [e for e in d.events if isinstance(e, ev.StepSurplusCompensationFailed)]
    assert [f.will_retry for f in failed] == [True, False]
    assert d.state.step("S1").surplus_of(2).status is SurplusStatus.COMPENSATION_FAILED  # type: ignore[union-attr]


def _reading_task() -> TaskDefinition:
    task = TaskDefinition("Reads", queue="q", request=Req, step_timeout_seconds=30)
    task.step("A", order=1, data=Data)(_noop)
    task.step("B", order=2, data=Data)(_noop)
    task.step("C", order=3, data=Data, reads=["A"])(_noop)
    task.step("D", order=4, data=Data)(_noop)
    task.compensation("C")(_undo)
    return task


def test_a_step_command_carries_only_the_data_its_step_reads() -> None:
    d = Driver(_reading_task())
    d.submit()
    for step in ("A", "B", "C"):
        d.succeed(step)
    by_step = {c.step: c for c in d.commands if isinstance(c, msg.ExecuteStep)}
    assert set(by_step["C"].step_data) == {"A"}  # B's data stays home
    assert set(by_step["D"].step_data) == {"A", "B", "C"}  # no declaration: everything
    d.fail("D", retryable=False)
    (undo_c,) = [c for c in d.commands if isinstance(c, msg.CompensateStep)]
    assert set(undo_c.step_data) == {"A", "C"}  # what it reads, and its own data


def test_reads_naming_an_unknown_or_later_step_is_reported() -> None:
    from tasksaga.core.diagnostics import diagnose

    task = _reading_task()
    task.step("E", order=5, data=Data, reads=["D", "E", "Nope"])(_noop)
    found = [d.message for d in diagnose(task) if d.code == "TS119"]
    assert len(found) == 2 and "'E'" in found[0] and "'Nope'" in found[1]
    assert not [d for d in diagnose(_reading_task()) if d.code == "TS119"]


def test_handlers_get_a_key_stable_across_attempts() -> None:
    from tasksaga.core.context import StepContext

    task = linear(1)
    first = StepContext(task_id="t1", definition=task, request=Req(), step_data_json={},
                        step="S1", attempt=1, idempotency_key="t1:S1:1")
    second = StepContext(task_id="t1", definition=task, request=Req(), step_data_json={},
                         step="S1", attempt=2, idempotency_key="t1:S1:2")
    assert first.step_key == second.step_key == "t1:S1"
    assert first.idempotency_key != second.idempotency_key


# -- the property ---------------------------------------------------------------------------

ACTIONS = ("tick", "succeed_any", "fail_current", "compensated", "cancel")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 7)), max_size=40))
def test_every_successful_attempt_is_kept_or_compensated(script: list[tuple[str, int]]) -> None:
    """Hypothesis: whatever the order in which attempts of a step answer (late, after a newer
    attempt, after the task ended), every success is either the step's recorded effect (undone
    by the saga's compensation when the task fails) or a surplus effect for which a
    compensation was sent; and no two attempts' effects are both kept."""
    d = Driver(linear(2, retry=RetryPolicy(max_retries=3, delay_ms=0)))
    d.submit()
    dispatched: list[tuple[str, int, int]] = []  # step, attempt, token
    succeeded: set[tuple[str, int]] = set()
    for action, pick in script:
        dispatched = [(c.step, c.attempt, c.fencing_token) for c in d.commands
                      if isinstance(c, msg.ExecuteStep)]
        if action == "tick":  # past the start and step timeouts: whatever runs times out
            d.advance(330_000)
        elif action == "succeed_any" and dispatched:
            step, attempt, token = dispatched[pick % len(dispatched)]
            if (step, attempt) not in succeeded:
                succeeded.add((step, attempt))
                d.send(_success(d, step, attempt, f"{step}-{attempt}", token))
        elif action == "fail_current" and d.running():
            d.fail(d.running()[0])
        elif action == "compensated" and d.compensating():
            d.compensated(d.compensating()[0])
        elif action == "cancel":
            d.send(msg.CancelTask("t1", "property", d.now))
    surplus_undone = {(c.step, c.surplus_attempt) for c in d.commands
                      if isinstance(c, msg.CompensateStep) and c.surplus_attempt}
    for step, attempt in succeeded:
        state = d.state.step(step)
        kept = state.attempt == attempt and state.data_json == Data(
            value=f"{step}-{attempt}").model_dump_json()
        assert kept != ((step, attempt) in surplus_undone), (step, attempt, state)
        if not kept:
            assert state.surplus_of(attempt) is not None

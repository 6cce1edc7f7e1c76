"""The operator's repairs, on the pure core: skip a failed compensation, resolve, redrive."""

from __future__ import annotations

from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.audit import describe
from tasksaga.core.state import TERMINAL_STATUSES, StepStatus, TaskStatus
from tests.unit.pivot_sagas import pivoted
from tests.unit.sagas import Driver, linear
from tests.unit.test_pivot import fail_for_good, through_pivot


def compensation_failed_at_s2() -> Driver:
    """S1, S2 completed, S3 failed; S2's compensation failed for good."""
    d = Driver(linear(3))
    d.submit()
    d.succeed("S1")
    d.succeed("S2")
    d.fail("S3", retryable=False)
    d.send(msg.CompensationAttemptFailed("t1", "S2", 1, "S3Down", "unreachable"))
    assert d.state.status is TaskStatus.COMPENSATION_FAILED
    return d


def test_skipping_the_failed_compensation_goes_on_compensating_the_steps_before_it() -> None:
    d = compensation_failed_at_s2()
    decision = d.send(msg.SkipCompensation("t1", "S2", "refunded by hand", "ops", d.now))
    assert decision.events[0] == ev.CompensationSkipped("S2", "refunded by hand", "ops", d.now)
    assert d.state.step("S2").status is StepStatus.COMPENSATION_SKIPPED
    assert d.compensations() == ["S2", "S1"]  # the chain continues past the skipped step
    d.compensated("S1")
    assert d.state.status is TaskStatus.FAILED
    assert d.state.step("S1").status is StepStatus.COMPENSATED
    assert d.state.step("S2").status is StepStatus.COMPENSATION_SKIPPED


def test_skipping_the_first_step_s_compensation_ends_the_task_at_once() -> None:
    d = Driver(linear(2))
    d.submit()
    d.succeed("S1")
    d.fail("S2", retryable=False)
    d.send(msg.CompensationAttemptFailed("t1", "S1", 1, "S3Down", "unreachable"))
    d.send(msg.SkipCompensation("t1", "S1", "nothing to undo", "ops", d.now))
    assert d.state.status is TaskStatus.FAILED
    assert isinstance(d.events[-1], ev.TaskFailed)


def test_a_skip_of_a_step_whose_compensation_did_not_fail_records_nothing() -> None:
    d = compensation_failed_at_s2()
    assert d.send(msg.SkipCompensation("t1", "S1", "wrong step", "ops", d.now)).is_empty
    assert d.send(msg.SkipCompensation("t1", "Nope", "no such step", "ops", d.now)).is_empty
    running = Driver(linear(2))
    running.submit()
    assert running.send(msg.SkipCompensation("t1", "S1", "r", "ops", running.now)).is_empty


def test_resolving_a_compensation_failed_task_ends_it_with_the_operator_s_reason() -> None:
    d = compensation_failed_at_s2()
    decision = d.send(msg.ResolveTask("t1", "cleaned the bucket by hand", "ops", d.now))
    assert decision.events == [ev.TaskResolved("cleaned the bucket by hand", "ops",
                                               "CompensationFailed", d.now)]
    assert decision.commands == []
    assert d.state.status is TaskStatus.RESOLVED and TaskStatus.RESOLVED in TERMINAL_STATUSES
    assert d.state.end_reason == ("resolved by ops (was CompensationFailed): cleaned the "
                                  "bucket by hand")
    # Terminal: nothing more is retried, skipped or resolved again.
    assert d.send(msg.RetryCompensation("t1", d.now)).is_empty
    assert d.send(msg.SkipCompensation("t1", "S2", "r", "ops", d.now)).is_empty
    assert d.send(msg.ResolveTask("t1", "again", "ops", d.now)).is_empty


def test_a_task_that_needs_attention_can_be_resolved_but_a_running_one_cannot() -> None:
    d = Driver(pivoted(retries=0))
    through_pivot(d)
    assert d.send(msg.ResolveTask("t1", "too early", "ops", d.now)).is_empty
    fail_for_good(d, "Notify")
    assert d.state.status is TaskStatus.NEEDS_ATTENTION
    d.send(msg.ResolveTask("t1", "customer told by phone", "ops", d.now))
    assert d.state.status is TaskStatus.RESOLVED
    assert d.compensations() == []


def test_a_redrive_resends_the_running_step_s_command_with_its_lease_and_a_fresh_deadline(
) -> None:
    d = Driver(linear(2))
    d.submit()
    first = d.commands[-1]
    assert isinstance(first, msg.ExecuteStep)
    d.now += 5_000
    decision = d.send(msg.RedriveTask("t1", "command lost", "ops", d.now))
    assert decision.events == [ev.TaskRedriven(["ExecuteStep S1#1"], "command lost", "ops",
                                               d.now)]
    [again] = decision.commands
    assert isinstance(again, msg.ExecuteStep)
    assert (again.attempt, again.fencing_token, again.idempotency_key) == (
        first.attempt, first.fencing_token, first.idempotency_key)
    assert again.timeout_at_ms == first.timeout_at_ms + 5_000
    [timer] = decision.timers
    assert timer.timer.kind is msg.TimerKind.STEP_TIMEOUT and timer.fire_at_ms == (
        again.timeout_at_ms)
    # A duplicate answer changes nothing: the first success completes the step, once.
    d.succeed("S1")
    assert d.send(msg.StepSucceeded("t1", "S1", 1, '{"value": "S1"}')).is_empty
    assert d.dispatched() == ["S1", "S1", "S2"]  # the first dispatch, its resent copy, S2


def test_a_redrive_of_a_compensating_task_resends_its_compensation() -> None:
    d = Driver(linear(3))
    d.submit()
    d.succeed("S1")
    d.succeed("S2")
    d.fail("S3", retryable=False)
    decision = d.send(msg.RedriveTask("t1", "stuck", "ops", d.now))
    [again] = decision.commands
    assert isinstance(again, msg.CompensateStep)
    assert (again.step, again.attempt, again.idempotency_key) == ("S2", 1,
                                                                  "t1:S2:compensate:1")
    assert again.step_data["S2"] == d.state.step("S2").data_json


def test_a_redrive_of_an_ended_task_records_nothing() -> None:
    d = compensation_failed_at_s2()
    assert d.send(msg.RedriveTask("t1", "r", "ops", d.now)).is_empty


def test_each_repair_has_an_audit_line_naming_the_operator_and_the_reason() -> None:
    assert describe(ev.CompensationSkipped("S2", "refunded", "ops", 1)) == (
        "compensation of step S2 skipped by ops: refunded; its effect stays, compensation "
        "goes on")
    assert describe(ev.TaskResolved("fixed", "ops", "NeedsAttention", 1)) == (
        "task resolved by ops (was NeedsAttention): fixed")
    assert describe(ev.TaskRedriven([], "stuck", "ops", 1)) == (
        "redriven by ops: resent nothing in flight (stuck)")

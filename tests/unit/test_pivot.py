"""Pivot steps: past the point of no return a task only goes forward (pure core)."""

from __future__ import annotations

from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.audit import describe
from tasksaga.core.pivot import passed_pivot
from tasksaga.core.state import StepStatus, TaskStatus, fold
from tests.unit.pivot_sagas import pivoted
from tests.unit.sagas import Driver

COMPENSATION = (ev.CompensationStarted, ev.StepCompensationDispatched, ev.StepCompensated)


def through_pivot(d: Driver) -> None:
    d.submit()
    for step in ("Reserve", "Charge", "Pack", "Label", "Ship"):
        d.succeed(step)


def fail_for_good(d: Driver, step: str) -> None:
    """Fail every attempt the policy allows (retries fire as their timers come due)."""
    d.fail(step)
    while d.state.step(step).status is StepStatus.RETRY_SCHEDULED:
        d.advance(10_000)
        d.fail(step)


def test_a_failure_after_the_pivot_is_retried_forward_then_left_to_an_operator() -> None:
    d = Driver(pivoted(retries=2))
    through_pivot(d)
    fail_for_good(d, "Notify")
    assert d.dispatched().count("Notify") == 3  # the policy's two retries, forward
    assert d.state.status is TaskStatus.NEEDS_ATTENTION
    assert not [e for e in d.events if isinstance(e, COMPENSATION)]
    assert d.compensations() == []
    last = d.events[-1]
    assert last == ev.TaskNeedsAttention("Notify", "Ship", "Boom", "bad", d.now)
    assert d.state.end_reason == ("step Notify failed after the pivot Ship: Boom: bad; "
                                  "nothing was compensated")
    assert d.state.status.is_terminal  # nothing more happens until an operator acts


def test_before_the_pivot_a_permanent_failure_still_compensates_in_reverse() -> None:
    d = Driver(pivoted(retries=0))
    d.submit()
    for step in ("Reserve", "Charge", "Pack", "Label"):
        d.succeed(step)
    d.fail("Ship", retryable=False)  # the pivot itself failed: it never completed
    assert d.state.status is TaskStatus.COMPENSATING
    for _ in range(3):
        d.compensated(d.compensating()[0])
    assert d.compensations() == ["Pack", "Charge", "Reserve"]
    assert d.state.status is TaskStatus.FAILED


def test_the_log_alone_says_the_pivot_was_passed() -> None:
    d = Driver(pivoted())
    d.submit()
    for step in ("Reserve", "Charge", "Pack", "Label"):
        d.succeed(step)
    assert passed_pivot(d.definition, fold(list(d.events))) is None
    d.succeed("Ship")
    assert passed_pivot(d.definition, fold(list(d.events))) == "Ship"


def test_cancelling_after_the_pivot_is_refused_and_the_task_goes_on() -> None:
    d = Driver(pivoted())
    through_pivot(d)
    decision = d.send(msg.CancelTask("t1", "customer changed their mind", d.now))
    assert decision.events == [ev.CancellationRefused("customer changed their mind", "Ship",
                                                      d.now)]
    assert decision.commands == []  # Notify is not told to stop
    for step in ("Notify", "Invoice", "Archive"):
        d.succeed(step)
    assert d.state.status is TaskStatus.COMPLETED
    assert d.compensations() == []


def test_the_task_timeout_after_the_pivot_does_not_compensate() -> None:
    d = Driver(pivoted(timeout_seconds=60))
    through_pivot(d)
    d.advance(61_000)
    assert isinstance(d.events[-1], ev.CancellationRefused)
    assert d.state.status is TaskStatus.RUNNING
    assert not [e for e in d.events if isinstance(e, COMPENSATION)]


def test_a_pivot_that_succeeds_while_a_cancellation_drains_wins_over_it() -> None:
    """Compensation waits for running steps; the pivot's success then means the parcel left:
    the cancellation is refused and the saga goes forward instead of refunding."""
    d = Driver(pivoted())
    d.submit()
    for step in ("Reserve", "Charge", "Pack", "Label"):
        d.succeed(step)
    d.send(msg.CancelTask("t1", "too slow", d.now))
    assert d.state.status is TaskStatus.COMPENSATING and d.cancels() == ["Ship"]
    d.succeed("Ship")
    assert d.state.status is TaskStatus.RUNNING
    assert isinstance(d.events[-2], ev.CancellationRefused)
    assert d.dispatched()[-1] == "Notify"
    assert d.compensations() == []


def test_a_pivot_that_stops_when_told_lets_the_cancellation_compensate() -> None:
    d = Driver(pivoted())
    d.submit()
    for step in ("Reserve", "Charge", "Pack", "Label"):
        d.succeed(step)
    d.send(msg.CancelTask("t1", "too slow", d.now))
    d.fail("Ship", error="Cancelled")
    for _ in range(3):
        d.compensated(d.compensating()[0])
    assert d.compensations() == ["Pack", "Charge", "Reserve"]
    assert d.state.status is TaskStatus.CANCELLED


def test_after_the_pivot_a_parallel_member_that_still_runs_finishes_first() -> None:
    d = Driver(pivoted(retries=0))
    through_pivot(d)
    d.succeed("Notify")
    d.fail("Invoice", retryable=False)
    assert d.state.status is TaskStatus.RUNNING  # Archive is not cut short
    assert d.cancels() == []
    d.succeed("Archive")
    assert d.state.status is TaskStatus.NEEDS_ATTENTION
    assert d.state.step("Archive").status is StepStatus.COMPLETED
    failure = d.events[-1]
    assert isinstance(failure, ev.TaskNeedsAttention) and failure.step == "Invoice"


def test_a_response_builder_failing_after_the_pivot_needs_attention() -> None:
    d = Driver(pivoted(builder_fails=True))
    through_pivot(d)
    for step in ("Notify", "Invoice", "Archive"):
        d.succeed(step)
    assert d.events[-1] == ev.TaskNeedsAttention("", "Ship", "KeyError", "'tracking_number'",
                                                 d.now)
    assert d.compensations() == []


def test_an_operator_retries_forward_with_a_fresh_retry_budget() -> None:
    d = Driver(pivoted(retries=1))
    through_pivot(d)
    fail_for_good(d, "Notify")  # attempts 1 and 2
    decision = d.send(msg.RetryForward("t1", d.now))
    assert decision.events[0] == ev.ForwardRetryRequested(d.now)
    assert len(decision.commands) == 1
    assert [(c.step, c.attempt) for c in decision.commands
            if isinstance(c, msg.ExecuteStep)] == [("Notify", 3)]
    assert d.state.status is TaskStatus.RUNNING and d.state.end_reason is None
    d.fail("Notify")  # attempt 3 is the first of the new budget: one retry follows
    assert d.state.step("Notify").status is StepStatus.RETRY_SCHEDULED
    d.advance(10_000)
    d.succeed("Notify")
    d.succeed("Invoice")
    d.succeed("Archive")
    assert d.state.status is TaskStatus.COMPLETED
    assert d.compensations() == []


def test_retry_forward_is_ignored_unless_the_task_needs_attention() -> None:
    d = Driver(pivoted())
    through_pivot(d)
    assert d.send(msg.RetryForward("t1", d.now)).is_empty


def test_the_audit_says_what_was_and_was_not_done() -> None:
    assert describe(ev.TaskNeedsAttention("Notify", "Ship", "MailDown", "smtp refused", 1)) == (
        "needs attention: step Notify failed after the pivot Ship; nothing was compensated "
        "(MailDown: smtp refused)")
    assert describe(ev.TaskNeedsAttention("", "Ship", "KeyError", "'x'", 1)).startswith(
        "needs attention: the response builder failed after the pivot Ship;")
    assert describe(ev.CancellationRefused("by alice", "Ship", 1)) == (
        "cancellation refused: the pivot Ship completed, so the task only goes forward and "
        "nothing is compensated (by alice)")
    assert describe(ev.ForwardRetryRequested(1)).startswith("forward retry requested")


def test_a_forward_retry_after_a_failed_response_builder_builds_it_again() -> None:
    d = Driver(pivoted(builder_fails=True))
    through_pivot(d)
    for step in ("Notify", "Invoice", "Archive"):
        d.succeed(step)
    decision = d.send(msg.RetryForward("t1", d.now))
    assert decision.commands == []  # no step failed: only the builder runs again
    assert [type(e) for e in decision.events] == [ev.ForwardRetryRequested,
                                                  ev.TaskNeedsAttention]
    assert d.state.status is TaskStatus.NEEDS_ATTENTION

"""The rules of wait_for and sleep steps (pure decide, a fake clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.state import StepStatus, TaskStatus, fold
from tests.unit.sagas import Driver
from tests.unit.wait_sagas import approval_flow, signal, sleep_until, submit


def reach_approve(timeout_seconds: float | None = 60.0, pivot: bool = False) -> Driver:
    d = Driver(approval_flow(timeout_seconds, pivot))
    submit(d)
    d.succeed("Hold")
    return d


def test_a_wait_for_step_is_not_dispatched_and_waits_until_its_timeout() -> None:
    d = reach_approve()
    assert d.dispatched() == ["Hold"]
    approve = d.state.step("Approve")
    assert approve.status is StepStatus.WAITING
    assert approve.waiting_until_ms == d.now + 60_000
    assert [t.timer.kind for t in d.timers][-1] is msg.TimerKind.WAIT_TIMEOUT


def test_the_signal_completes_the_step_and_its_data_reaches_later_steps() -> None:
    d = reach_approve()
    signal(d, approver="ann")
    assert d.state.step("Approve").status is StepStatus.COMPLETED
    assert d.state.step("CoolDown").status is StepStatus.WAITING
    d.advance(30_000)
    assert d.dispatched() == ["Hold", "Pay"]
    pay = d.commands[-1]
    assert isinstance(pay, msg.ExecuteStep)
    assert '"approver":"ann"' in pay.step_data["Approve"]


def test_a_signal_before_the_step_is_reached_is_kept_and_completes_it_when_reached() -> None:
    d = Driver(approval_flow())
    submit(d)
    signal(d, approver="early")
    assert d.state.step("Approve").status is StepStatus.PENDING
    d.succeed("Hold")
    assert d.state.step("Approve").status is StepStatus.COMPLETED
    assert '"early"' in (d.state.step("Approve").data_json or "")
    assert not any(t.timer.kind is msg.TimerKind.WAIT_TIMEOUT for t in d.timers)


def test_of_two_early_signals_only_the_first_is_kept_and_taken() -> None:
    d = Driver(approval_flow())
    submit(d)
    signal(d, approver="first", signal_id="a")
    signal(d, approver="second", signal_id="b")
    assert [e.signal_id for e in d.events if isinstance(e, ev.SignalReceived)] == ["a"]
    d.succeed("Hold")
    assert '"first"' in (d.state.step("Approve").data_json or "")


def test_a_repeated_signal_id_records_nothing() -> None:
    d = reach_approve()
    signal(d, signal_id="same")
    before = len(d.events)
    decision = d.send(msg.SendSignal("t1", "Approve", "same", '{"approver":"x"}', d.now))
    assert decision.events == [] and len(d.events) == before


def test_a_second_signal_after_the_step_completed_records_nothing() -> None:
    d = reach_approve()
    signal(d, approver="ann", signal_id="a")
    decision = d.send(msg.SendSignal("t1", "Approve", "b", '{"approver":"bob"}', d.now))
    assert decision.events == []
    assert '"ann"' in (d.state.step("Approve").data_json or "")


def test_the_timeout_takes_the_failure_path_before_the_pivot() -> None:
    d = reach_approve()
    d.advance(60_000)
    assert d.state.step("Approve").status is StepStatus.FAILED
    assert d.state.step("Approve").error_type == "SignalTimedOut"
    assert d.compensations() == ["Hold"]
    d.compensated("Hold")
    assert d.state.status is TaskStatus.FAILED


def test_the_timeout_after_the_pivot_leaves_the_task_to_an_operator() -> None:
    d = reach_approve(pivot=True)
    d.advance(60_000)
    assert d.state.status is TaskStatus.NEEDS_ATTENTION
    assert d.compensations() == []
    d.send(msg.RetryForward("t1", d.now))  # waits again, with a fresh timeout
    assert d.state.step("Approve").status is StepStatus.WAITING
    assert d.state.step("Approve").attempt == 2
    assert d.dispatched() == ["Hold"]
    signal(d)
    assert d.state.step("Approve").status is StepStatus.COMPLETED


def test_cancel_while_waiting_compensates_and_the_late_timer_does_nothing() -> None:
    d = reach_approve()
    d.send(msg.CancelTask("t1", "changed my mind", d.now))
    assert d.state.step("Approve").status is StepStatus.FAILED
    d.compensated("Hold")
    assert d.state.status is TaskStatus.CANCELLED
    decisions = d.advance(60_000)  # the wait's timeout timer still fires
    assert decisions and all(dec.events == [] for dec in decisions)
    assert not any(isinstance(e, ev.StepCompleted) and e.step == "Approve" for e in d.events)


def test_cancel_while_sleeping_compensates_and_the_wake_timer_does_nothing() -> None:
    d = reach_approve()
    signal(d)
    assert d.state.step("CoolDown").status is StepStatus.WAITING
    d.send(msg.CancelTask("t1", "stop", d.now))
    d.compensated("Hold")
    count = len(d.events)
    decisions = d.advance(30_000)
    assert decisions and all(dec.events == [] for dec in decisions)
    assert len(d.events) == count and d.dispatched() == ["Hold"]


def test_a_sleep_wakes_at_its_time_and_not_before() -> None:
    d = reach_approve()
    signal(d)
    woke_at = d.state.step("CoolDown").waiting_until_ms
    assert woke_at == d.now + 30_000
    d.advance(29_999)
    assert d.state.step("CoolDown").status is StepStatus.WAITING
    d.advance(1)
    assert d.state.step("CoolDown").status is StepStatus.COMPLETED
    assert d.dispatched()[-1] == "Pay"


def test_sleep_until_accepts_epoch_ms_and_an_aware_datetime() -> None:
    for request in ({"wake_at_ms": 1_000_000 + 5_000},
                    {"wake_at": datetime.fromtimestamp(1_005, UTC)}):
        d = Driver(sleep_until())
        submit(d, **request)
        assert d.state.step("Nap").waiting_until_ms == 1_005_000
        d.advance(5_000)
        assert d.dispatched() == ["After"]


def test_sleep_until_a_past_time_ends_at_once() -> None:
    d = Driver(sleep_until())
    submit(d, wake_at_ms=0)
    assert d.state.step("Nap").status is StepStatus.COMPLETED
    assert d.dispatched() == ["After"]


def test_a_naive_datetime_from_until_fails_the_step_with_a_clear_reason() -> None:
    d = Driver(sleep_until())
    submit(d, wake_at=datetime(2030, 1, 1) + timedelta(0))
    nap = d.state.step("Nap")
    assert nap.status is StepStatus.FAILED and nap.error_type == "SleepUntilError"
    assert "naive datetime" in (nap.error_message or "")
    assert d.state.status is TaskStatus.FAILED


def test_the_fold_of_the_log_shows_the_wait_and_until_when() -> None:
    d = reach_approve()
    state = fold(d.events)
    assert state.step("Approve").status is StepStatus.WAITING
    assert state.step("Approve").waiting_until_ms == d.now + 60_000


# -- rules combined (hypothesis) ------------------------------------------------------------

ACTIONS = st.lists(st.sampled_from(("signal_a", "signal_b", "hold", "tick", "sleep_end")),
                   max_size=12)


@settings(max_examples=200, deadline=None)
@given(ACTIONS)
def test_signals_in_any_order_complete_the_step_once_with_the_first_signal(
        actions: list[str]) -> None:
    d = Driver(approval_flow(timeout_seconds=None))
    submit(d)
    first: str | None = None
    for action in actions:
        if action == "hold" and d.state.step("Hold").status is StepStatus.RUNNING:
            d.succeed("Hold")
        elif action.startswith("signal"):
            who = action[-1]
            waiting = d.state.step("Approve").status in (StepStatus.PENDING, StepStatus.WAITING)
            if first is None and waiting:
                first = who
            signal(d, approver=who, signal_id=f"id-{who}")
            signal(d, approver=who, signal_id=f"id-{who}")  # a duplicate changes nothing
        elif action == "sleep_end":
            d.advance(30_000)
        else:
            d.advance(1)
    completions = [e for e in d.events if isinstance(e, ev.StepCompleted) and e.step == "Approve"]
    received = [e for e in d.events if isinstance(e, ev.SignalReceived)]
    assert len(completions) <= 1
    assert len({e.signal_id for e in received}) == len(received)
    if completions:
        assert f'"approver":"{first}"' in completions[0].data_json
        assert d.state.step("Hold").status is StepStatus.COMPLETED
    if first is not None and d.state.step("Hold").status is StepStatus.COMPLETED:
        assert len(completions) == 1
    assert fold(d.events) == d.state


def test_a_timer_of_another_attempt_does_not_end_the_wait() -> None:
    d = reach_approve()
    stale = msg.TimerFired("t1", msg.TimerKind.WAIT_TIMEOUT, "Approve", 2)
    assert d.send(stale).events == []
    assert d.state.step("Approve").status is StepStatus.WAITING


def test_until_returning_something_else_fails_the_step_with_a_clear_reason() -> None:
    from typing import Any, cast

    from tasksaga.core.steps import Sleep
    from tasksaga.core.waits import wake_time

    for wrong in ("tomorrow", True):
        until = cast(Any, lambda _ctx, w=wrong: w)
        try:
            wake_time(Sleep(until=until), cast(Any, None), 0)
        except TypeError as error:
            assert "epoch milliseconds (int) or a datetime" in str(error)
        else:
            raise AssertionError(f"{wrong!r} was accepted as a wake-up time")


def test_a_sleep_until_a_datetime_never_wakes_before_it() -> None:
    """Between two milliseconds it wakes at the later one; on one exactly, at that one."""
    from datetime import UTC, datetime, timedelta, timezone
    from typing import Any, cast

    from tasksaga.core.steps import Sleep
    from tasksaga.core.waits import wake_time

    exact = datetime(2026, 12, 3, 17, 0, 0, 123000, tzinfo=UTC)
    exact_ms = 1_796_317_200_123
    for until, expected in ((exact, exact_ms),
                            (exact + timedelta(microseconds=224), exact_ms + 1),
                            (exact + timedelta(microseconds=999), exact_ms + 1),
                            (exact.astimezone(timezone(timedelta(hours=-5))), exact_ms),
                            (datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC), 0)):
        woken = wake_time(Sleep(until=cast(Any, lambda _ctx, u=until: u)), cast(Any, None), 0)
        assert woken == expected, until
        assert woken * 1000 >= (until - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
            microseconds=1)

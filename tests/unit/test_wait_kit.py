"""The expense approval example under the test kit (SagaTestRun, a ManualClock): signals,
early signals, duplicates, timeouts, the cool-down sleep and cancellation while waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tasksaga.core import events as ev
from tasksaga.core.state import StepStatus, TaskStatus
from tasksaga.testing import SagaTestRun
from tasksaga_examples.expense_approval import (
    APPROVAL_TIMEOUT_S,
    Approval,
    ExpenseRequest,
    ExpenseResult,
    expense,
)


def _start(pay_after_s: float | None = None) -> SagaTestRun:
    run = SagaTestRun(expense)
    now = datetime.fromtimestamp(run.clock.now_ms() / 1000, UTC)
    pay_after = None if pay_after_s is None else now + timedelta(seconds=pay_after_s)
    run.submit(ExpenseRequest(expense_id="e-1", amount_cents=1200, pay_after=pay_after),
               settle=False)
    return run


def test_an_approved_expense_waits_for_the_cool_down_then_pays() -> None:
    run = _start(pay_after_s=600)
    assert run.task().step_status("Approve") is StepStatus.WAITING
    run.signal("Approve", Approval(approver="ann", approved=True))
    cool_down = run.task().state.step("CoolDown")
    assert cool_down.status is StepStatus.WAITING
    assert cool_down.waiting_until_ms == run.clock.now_ms() + 600_000
    run.advance(seconds=599)
    assert run.task().step_status("Pay") is StepStatus.PENDING
    run.advance(seconds=1)
    run.task().assert_completed()
    assert run.task().response(ExpenseResult).approver == "ann"
    run.task().assert_audit_contains("waiting for signal 'Approve'", "sleeping in 600000 ms")


def test_a_signal_sent_twice_with_one_id_is_recorded_once() -> None:
    run = _start()
    run.signal("Approve", Approval(approver="ann", approved=True), signal_id="click-1")
    run.signal("Approve", Approval(approver="ann", approved=True), signal_id="click-1")
    received = [e for e in run.task().events if isinstance(e, ev.SignalReceived)]
    assert len(received) == 1
    run.task().assert_completed()


def test_a_rejection_fails_pay_and_releases_the_hold() -> None:
    run = _start()
    run.signal("Approve", Approval(approver="bob", approved=False, note="too much"))
    run.run_until_settled()
    run.task().assert_status(TaskStatus.FAILED)
    run.task().assert_compensated(["HoldFunds"])


def test_no_approval_in_time_releases_the_hold() -> None:
    run = _start()
    run.advance(seconds=APPROVAL_TIMEOUT_S)
    task = run.task()
    task.assert_status(TaskStatus.FAILED)
    assert task.state.step("Approve").error_type == "SignalTimedOut"
    task.assert_compensated(["HoldFunds"])


def test_cancelling_while_cooling_down_compensates_and_the_sleep_never_ends() -> None:
    run = _start(pay_after_s=600)
    run.signal("Approve", Approval(approver="ann", approved=True))
    run.cancel()
    run.advance(seconds=3600)
    task = run.task()
    task.assert_status(TaskStatus.CANCELLED)
    assert task.step_status("CoolDown") is StepStatus.FAILED
    assert task.step_status("Pay") is StepStatus.PENDING
    task.assert_compensated(["HoldFunds"])

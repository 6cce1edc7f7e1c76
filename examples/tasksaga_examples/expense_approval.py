"""An expense approval: hold the funds, wait for a person's approval, let a cool-down pass,
then pay.

``Approve`` is a human step (``task.wait_for``): the task waits for
``POST /tasks/{id}/signals/Approve`` with an ``Approval`` body, sent by a caller with the
``approver`` role. No approval within ``APPROVAL_TIMEOUT_S``: the step fails and the hold is
released (compensation). A rejection (``approved: false``) fails ``Pay`` and releases the
hold the same way. ``CoolDown`` is a durable sleep (``task.sleep``): an approved expense is
paid no earlier than the request's ``pay_after`` (at once without one), whatever restarts
happen meanwhile, and the task's status shows it waiting until then.

``TASKSAGA_APPROVAL_TIMEOUT_S`` (every service's environment: the orchestrator schedules the
timeout) shortens the approval timeout for demos and tests.

Enable it with ``TASKSAGA_TASK_MODULES=...,tasksaga_examples.expense_approval`` (queue
``approvals``).
"""

from __future__ import annotations

import os
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, Field

from tasksaga.core import NonRetryableError, SagaContext, StepContext, TaskDefinition

APPROVAL_TIMEOUT_S = float(os.environ.get("TASKSAGA_APPROVAL_TIMEOUT_S", "3600"))


class ExpenseRequest(BaseModel):
    expense_id: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    amount_cents: int = Field(ge=1)
    # The cool-down: no payment before this time (an aware datetime: "...Z" or "+02:00").
    pay_after: AwareDatetime | None = None


class Hold(BaseModel):
    hold_id: str
    amount_cents: int


class Approval(BaseModel):
    """The body of the Approve signal."""

    approver: str = Field(min_length=1, max_length=200)
    approved: bool
    note: str = Field(default="", max_length=1000)


class Payment(BaseModel):
    payment_id: str
    amount_cents: int


class ExpenseResult(BaseModel):
    payment_id: str
    approver: str


expense = TaskDefinition(
    "ExpenseApproval", queue="approvals", request=ExpenseRequest, response=ExpenseResult,
    roles={"signal": ["approver"]},
)


@expense.step("HoldFunds", order=1)
def hold_funds(ctx: StepContext[ExpenseRequest]) -> Hold:
    return Hold(hold_id=f"hold-{ctx.request.expense_id}", amount_cents=ctx.request.amount_cents)


@expense.compensation("HoldFunds")
def release_hold(ctx: StepContext[ExpenseRequest], data: Hold) -> None:
    # The hold is the step's data: releasing it is what a ledger would record; nothing else
    # to undo here.
    return None


expense.wait_for("Approve", order=2, data=Approval, timeout_seconds=APPROVAL_TIMEOUT_S)


def cool_down_end(ctx: SagaContext[ExpenseRequest]) -> datetime | int:
    """Evaluated by the orchestrator when the step is reached; a time already past (0: no
    pay_after) ends the sleep at once."""
    return ctx.request.pay_after or 0


expense.sleep("CoolDown", order=3, until=cool_down_end)


@expense.step("Pay", order=4)
def pay(ctx: StepContext[ExpenseRequest]) -> Payment:
    approval = ctx.data(Approval)
    if not approval.approved:
        raise NonRetryableError(f"expense {ctx.request.expense_id} was rejected by "
                                f"{approval.approver}: {approval.note or 'no reason given'}")
    return Payment(payment_id=f"pay-{ctx.request.expense_id}",
                   amount_cents=ctx.data(Hold).amount_cents)


@expense.response_builder
def expense_result(ctx: SagaContext[ExpenseRequest]) -> ExpenseResult:
    return ExpenseResult(payment_id=ctx.data(Payment).payment_id,
                         approver=ctx.data(Approval).approver)

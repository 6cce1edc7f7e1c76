"""Task definitions with wait_for and sleep steps, for the unit tests of their rules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from tasksaga.core import SagaContext, StepContext, TaskDefinition
from tasksaga.core import messages as msg
from tests.unit.sagas import Data, Driver, _noop, _undo


class Approval(BaseModel):
    approver: str
    approved: bool = True


def approval_flow(timeout_seconds: float | None = 60.0, pivot: bool = False) -> TaskDefinition:
    """Hold (compensable, or the pivot) -> Approve (wait_for) -> CoolDown (sleep 30 s) -> Pay."""
    task = TaskDefinition("Approval", queue="q", request=_Req, step_timeout_seconds=30)
    task.step("Hold", order=1, data=Data, pivot=pivot)(_noop)
    if not pivot:
        task.compensation("Hold")(_undo)
    task.wait_for("Approve", order=2, data=Approval, timeout_seconds=timeout_seconds)
    task.sleep("CoolDown", order=3, seconds=30)
    task.step("Pay", order=4, data=Paid)(_pay)
    return task


class _Req(BaseModel):
    width: int = 1920
    wake_at_ms: int | None = None
    wake_at: datetime | None = None


class Paid(BaseModel):
    approver: str


def _pay(ctx: StepContext[Any]) -> Paid:
    return Paid(approver=ctx.data(Approval).approver)


def _wake(ctx: SagaContext[_Req]) -> int | datetime:
    if ctx.request.wake_at is not None:
        return ctx.request.wake_at
    assert ctx.request.wake_at_ms is not None
    return ctx.request.wake_at_ms


def sleep_until() -> TaskDefinition:
    task = TaskDefinition("SleepUntil", queue="q", request=_Req, step_timeout_seconds=30)
    task.sleep("Nap", order=1, until=_wake)
    task.step("After", order=2, data=Data)(_noop)
    return task


def submit(d: Driver, **request: Any) -> None:
    d.send(msg.SubmitTask("t1", d.definition.name, _Req(**request).model_dump_json(), None,
                          None, d.now))


def signal(d: Driver, approver: str = "ann", signal_id: str = "s1",
           approved: bool = True) -> None:
    d.send(msg.SendSignal("t1", "Approve", signal_id,
                          Approval(approver=approver, approved=approved).model_dump_json(),
                          d.now, approver))


EPOCH_MS = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)

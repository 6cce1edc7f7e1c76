"""An order-fulfilment shaped definition with a pivot, for the pivot tests (no servers)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tasksaga.core import RetryPolicy, SagaContext, StepContext, TaskDefinition
from tests.unit.sagas import Data, Req

BEFORE_PIVOT = ("Reserve", "Charge", "Pack", "Label")
AFTER_PIVOT = ("Notify", "Invoice", "Archive")


class Done(BaseModel):
    ok: bool = True


def _noop(ctx: StepContext[Any]) -> Data:
    return Data(value=ctx.step)


def _undo(ctx: StepContext[Any], data: Any) -> None:
    return None


def pivoted(retries: int = 1, *, builder_fails: bool = False,
            timeout_seconds: float | None = None) -> TaskDefinition:
    """Reserve, Charge (both compensable), Pack + Label in parallel, Ship (the pivot), then
    Notify, then Invoice + Archive in parallel; every step retried ``retries`` times."""
    task = TaskDefinition("Pivoted", queue="q", request=Req, response=Done,
                          step_timeout_seconds=30, timeout_seconds=timeout_seconds)
    policy = RetryPolicy(max_retries=retries, delay_ms=100)
    task.step("Reserve", order=1, data=Data, retry=policy)(_noop)
    task.step("Charge", order=2, data=Data, retry=policy)(_noop)
    task.group("Prepare", order=3)
    task.step("Pack", order=3, group="Prepare", data=Data, retry=policy)(_noop)
    task.step("Label", order=3, group="Prepare", data=Data, retry=policy)(_noop)
    task.step("Ship", order=4, data=Data, retry=policy, pivot=True)(_noop)
    task.step("Notify", order=5, data=Data, retry=policy)(_noop)
    task.group("Close", order=6)
    task.step("Invoice", order=6, group="Close", data=Data, retry=policy)(_noop)
    task.step("Archive", order=6, group="Close", data=Data, retry=policy)(_noop)
    for name in ("Reserve", "Charge", "Pack"):
        task.compensation(name)(_undo)

    @task.response_builder
    def respond(ctx: SagaContext[Req]) -> Done:
        if builder_fails:
            raise KeyError("tracking_number")
        return Done()

    return task

"""A task type for the dashboard's browser test: a first step, a parallel group (one member
reports progress, the other fails once then succeeds), and a last step, each undoable, so the
timeline shows running and completed bars, a retry, a parallel group and, when cancelled,
compensation in reverse."""

from __future__ import annotations

import time

from pydantic import BaseModel

from tasksaga.core import (
    AwaitMode,
    NonRetryableError,
    RetryPolicy,
    SagaContext,
    StepCancelled,
    StepContext,
    TaskDefinition,
)


class RenderRequest(BaseModel):
    prepare_s: float = 1.0
    ticks: int = 6
    interval_s: float = 0.5


class Done(BaseModel):
    step: str
    attempt: int


render = TaskDefinition("DashboardRender", queue="dashboard", request=RenderRequest,
                        cancellable=True)
render.group("Render", order=2, mode=AwaitMode.ALL)


def _wait(ctx: StepContext[RenderRequest], seconds: float) -> None:
    if ctx.cancelled is not None:
        ctx.cancelled.wait(seconds)
    else:
        time.sleep(seconds)
    if ctx.is_cancelled():
        raise StepCancelled(f"{ctx.step} cancelled")


def _undo(ctx: StepContext[RenderRequest], data: Done) -> None:
    time.sleep(0.2)


@render.step("Prepare", order=1, data=Done)
def prepare(ctx: StepContext[RenderRequest]) -> Done:
    _wait(ctx, ctx.request.prepare_s)
    return Done(step=ctx.step, attempt=ctx.attempt)


@render.step("Encode", order=2, group="Render", data=Done, timeout_seconds=120)
def encode(ctx: StepContext[RenderRequest]) -> Done:
    for tick in range(1, ctx.request.ticks + 1):
        _wait(ctx, ctx.request.interval_s)
        ctx.heartbeat(tick / ctx.request.ticks, f"frame batch {tick} of {ctx.request.ticks}")
    return Done(step=ctx.step, attempt=ctx.attempt)


@render.step("Thumbnail", order=2, group="Render", data=Done,
             retry=RetryPolicy(max_retries=2, delay_ms=300))
def thumbnail(ctx: StepContext[RenderRequest]) -> Done:
    _wait(ctx, ctx.request.interval_s)
    if ctx.attempt == 1:
        raise RuntimeError("thumbnail renderer busy (the first attempt always fails)")
    return Done(step=ctx.step, attempt=ctx.attempt)


@render.step("Publish", order=3, data=Done)
def publish(ctx: StepContext[RenderRequest]) -> Done:
    _wait(ctx, ctx.request.interval_s)
    return Done(step=ctx.step, attempt=ctx.attempt)


def wants_thumbnail(ctx: SagaContext[RenderRequest]) -> bool:
    return ctx.request.ticks > 0


def render_size(ctx: SagaContext[RenderRequest]) -> str:
    return f"ticks={ctx.request.ticks}, interval_s={ctx.request.interval_s}"


render.condition("Thumbnail", "the render has frames", wants_thumbnail, summary=render_size)

for _step in ("Prepare", "Encode", "Thumbnail", "Publish"):
    render.compensation(_step)(_undo)


class Nothing(BaseModel):
    pass


class Decision(BaseModel):
    approved: bool
    note: str = ""


# A human approval: the page's signal button answers it; a refusal fails the task, and the
# first undo of Reserve fails, so the task stops in CompensationFailed for the page's
# "Retry compensation" button.
approval = TaskDefinition("DashboardApproval", queue="dashboard", request=Nothing,
                          cancellable=True)


@approval.step("Reserve", order=1, data=Done)
def reserve(ctx: StepContext[Nothing]) -> Done:
    return Done(step=ctx.step, attempt=ctx.attempt)


@approval.compensation("Reserve")
def release(ctx: StepContext[Nothing], data: Done) -> None:
    if ctx.attempt == 1:
        raise RuntimeError("the reservation desk is closed (the first release always fails)")


approval.wait_for("Approve", order=2, data=Decision)


@approval.step("Charge", order=3, data=Done)
def charge(ctx: StepContext[Nothing]) -> Done:
    decision = ctx.data(Decision)
    if not decision.approved:
        raise NonRetryableError(f"not approved: {decision.note}")
    return Done(step=ctx.step, attempt=ctx.attempt)


# Past its point of no return (Ship), a failure leaves the task to an operator: the page's
# "Retry forward" button dispatches Notify again, which then succeeds.
shipment = TaskDefinition("DashboardShipment", queue="dashboard", request=Nothing)


@shipment.step("Ship", order=1, pivot=True, data=Done)
def ship(ctx: StepContext[Nothing]) -> Done:
    return Done(step=ctx.step, attempt=ctx.attempt)


@shipment.step("Notify", order=2, data=Done)
def notify(ctx: StepContext[Nothing]) -> Done:
    if ctx.attempt == 1:
        raise RuntimeError("the mail relay refused the first notice")
    return Done(step=ctx.step, attempt=ctx.attempt)

"""A task type for the dashboard's browser test: a first step, a parallel group (one member
reports progress, the other fails once then succeeds), and a last step, each undoable, so the
timeline shows running and completed bars, a retry, a parallel group and, when cancelled,
compensation in reverse."""

from __future__ import annotations

import time

from pydantic import BaseModel

from tasksaga.core import AwaitMode, RetryPolicy, StepCancelled, StepContext, TaskDefinition


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


for _step in ("Prepare", "Encode", "Thumbnail", "Publish"):
    render.compensation(_step)(_undo)

"""A task type for the live-progress tests: a step that reports progress as it goes."""

from __future__ import annotations

import time

from pydantic import BaseModel

from tasksaga.core import StepCancelled, StepContext, TaskDefinition


class TickRequest(BaseModel):
    ticks: int = 4
    interval_s: float = 0.5


class Ticks(BaseModel):
    count: int


ticker = TaskDefinition("Ticker", queue="live", request=TickRequest, cancellable=True)


@ticker.step("Count", order=1, timeout_seconds=120)
def count(ctx: StepContext[TickRequest]) -> Ticks:
    for tick in range(1, ctx.request.ticks + 1):
        if ctx.cancelled is not None:
            ctx.cancelled.wait(ctx.request.interval_s)
        else:
            time.sleep(ctx.request.interval_s)
        if ctx.is_cancelled():
            raise StepCancelled(f"cancelled at tick {tick}")
        ctx.heartbeat(tick / ctx.request.ticks, f"tick {tick} of {ctx.request.ticks}")
    return Ticks(count=ctx.request.ticks)


@ticker.step("Finish", order=2)
def finish(ctx: StepContext[TickRequest]) -> None:
    time.sleep(ctx.request.interval_s)

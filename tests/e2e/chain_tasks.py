"""A four-step linear saga for the chain tests: every step appends ``task:step:attempt`` to a
ledger file; B can hold its first run (until a marker file exists) so a test can kill the
worker while B runs inside a chain."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel

from tasksaga.core import StepContext, TaskDefinition


class ChainRequest(BaseModel):
    ledger: str
    hold_b_s: float = 0.0  # B's first run waits this long (after writing its marker)


class Done(BaseModel):
    step: str


task = TaskDefinition("ChainedSaga", queue="chained", request=ChainRequest,
                      step_timeout_seconds=120)


def _record(ctx: StepContext[ChainRequest], step: str) -> Done:
    with open(ctx.request.ledger, "a") as ledger:
        ledger.write(f"{ctx.task_id}:{step}:{ctx.attempt}\n")
    return Done(step=step)


@task.step("A", order=1, data=Done)
def step_a(ctx: StepContext[ChainRequest]) -> Done:
    return _record(ctx, "A")


@task.step("B", order=2, data=Done)
def step_b(ctx: StepContext[ChainRequest]) -> Done:
    marker = Path(f"{ctx.request.ledger}.{ctx.task_id}.B-started")
    if ctx.request.hold_b_s and not marker.exists():
        marker.touch()
        time.sleep(ctx.request.hold_b_s)
    return _record(ctx, "B")


@task.step("C", order=3, data=Done)
def step_c(ctx: StepContext[ChainRequest]) -> Done:
    return _record(ctx, "C")


@task.step("D", order=4, data=Done)
def step_d(ctx: StepContext[ChainRequest]) -> Done:
    return _record(ctx, "D")

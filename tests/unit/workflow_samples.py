"""Workflows the unit tests run: one per primitive, plus a loop and a switchable body."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from tasksaga.core import RetryPolicy, StepContext
from tasksaga.workflow import (
    SignalTimedOut,
    StepFailed,
    WorkflowCancelled,
    WorkflowContext,
    step,
    workflow,
)


class Req(BaseModel):
    n: int = 1
    label: str = "x"


class Num(BaseModel):
    value: int


class Text(BaseModel):
    text: str


class Approval(BaseModel):
    approved: bool
    by: str


class Out(BaseModel):
    values: list[int] = []
    texts: list[str] = []


@step
def double(ctx: StepContext[Req], num: Num) -> Num:
    return Num(value=num.value * 2)


@step(retry=RetryPolicy(max_retries=2, delay_ms=100))
def flaky(ctx: StepContext[Req], num: Num) -> Num:
    return Num(value=num.value + 1)


@step
def undo(ctx: StepContext[Req], num: Num) -> None:
    return None


@step
def slow(ctx: StepContext[Req], num: Num) -> Num:
    return Num(value=num.value)


@workflow("WfSteps", queue="wf", request=Req, response=Out)
async def steps_flow(wf: WorkflowContext, req: Req) -> Out:
    first = await wf.step(double, Num(value=req.n))
    second = await wf.step(flaky, first)
    return Out(values=[first.value, second.value])


@workflow("WfCatch", queue="wf", request=Req, response=Out)
async def catch_flow(wf: WorkflowContext, req: Req) -> Out:
    first = await wf.step(double, Num(value=req.n))
    try:
        await wf.step(flaky, first)
    except StepFailed as failure:
        await wf.step(undo, first)
        return Out(texts=[failure.step, failure.error_type, failure.error_message])
    return Out(texts=["no failure"])


@workflow("WfUncaught", queue="wf", request=Req, response=Out)
async def uncaught_flow(wf: WorkflowContext, req: Req) -> Out:
    await wf.step(flaky, Num(value=req.n))
    return Out()


@workflow("WfSleep", queue="wf", request=Req, response=Out)
async def sleep_flow(wf: WorkflowContext, req: Req) -> Out:
    before = wf.now()
    await wf.sleep(timedelta(minutes=5))
    after = wf.now()
    return Out(values=[int((after - before).total_seconds())])


@workflow("WfParallel", queue="wf", request=Req, response=Out)
async def parallel_flow(wf: WorkflowContext, req: Req) -> Out:
    a, b = await wf.all(wf.step(double, Num(value=1)), wf.step(double, Num(value=10)))
    first = await wf.any(wf.step(slow, Num(value=7)), wf.step(double, Num(value=100)))
    return Out(values=[a.value, b.value, first.value])


@workflow("WfSignal", queue="wf", request=Req, response=Out,
          signals={"approve": Approval, "confirm": None})
async def signal_flow(wf: WorkflowContext, req: Req) -> Out:
    approval = await wf.signal("approve", Approval)
    try:
        await wf.signal("confirm", timeout=timedelta(hours=1))
        confirmed = "confirmed"
    except SignalTimedOut as timeout:
        confirmed = timeout.error_type
    return Out(texts=[approval.by, str(approval.approved), confirmed])


@workflow("WfValues", queue="wf", request=Req, response=Out)
async def values_flow(wf: WorkflowContext, req: Req) -> Out:
    stamp = wf.now()
    fraction = wf.random()
    ident = wf.uuid()
    await wf.step(double, Num(value=1))
    return Out(texts=[stamp.isoformat(), repr(fraction), str(ident)])


@workflow("WfCancel", queue="wf", request=Req, response=Out, timeout_seconds=300)
async def cancel_flow(wf: WorkflowContext, req: Req) -> Out:
    done = await wf.step(double, Num(value=req.n))
    try:
        if req.label == "sleep":
            await wf.sleep(timedelta(minutes=10))
        else:
            await wf.step(slow, done)
    except WorkflowCancelled:
        with wf.shield():
            await wf.step(undo, done)
        raise
    return Out(values=[done.value])


# A body whose path a test switches, as a deployment of new code would.
VARIANT: dict[str, Any] = {"second": "flaky", "patched": False}


@workflow("WfSwitch", queue="wf", request=Req, response=Out, signals={"go": None})
async def switch_flow(wf: WorkflowContext, req: Req) -> Out:
    first = await wf.step(double, Num(value=req.n))
    if VARIANT["patched"] and wf.patched("use-slow"):
        second = await wf.step(slow, first)
    elif VARIANT["second"] == "flaky":
        second = await wf.step(flaky, first)
    else:
        second = await wf.step(slow, first)
    await wf.signal("go")
    third = await wf.step(double, second)
    return Out(values=[third.value])


@workflow("WfLoop", queue="wf", request=Req, response=Out)
async def loop_flow(wf: WorkflowContext, req: Req) -> Out:
    total = Num(value=0)
    for _ in range(req.n):
        total = await wf.step(flaky, total)
    return Out(values=[total.value])


def _not_async(wf: WorkflowContext, req: Req) -> Out:
    return Out()


not_async_flow = workflow("WfNotAsync", queue="wf", request=Req,
                          response=Out)(_not_async)  # type: ignore[arg-type]


async def _prepare(wf: WorkflowContext, start: int, minutes: int) -> int:
    doubled = await wf.step(double, Num(value=start))
    await wf.sleep(timedelta(minutes=minutes))
    return doubled.value


@workflow("WfRoutines", queue="wf", request=Req, response=Out)
async def routines_flow(wf: WorkflowContext, req: Req) -> Out:
    """Two async helpers run side by side (routines), then the body goes on."""
    began = wf.now()
    first, second = await wf.all(_prepare(wf, 1, 5), _prepare(wf, 10, 3))
    ended = wf.now()
    return Out(values=[first, second, int((ended - began).total_seconds())])

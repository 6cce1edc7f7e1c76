"""A DSL saga started as a child by workflows (``wf.child``), and the workflows: one that
awaits it and may compensate it, one that catches its failure, one that awaits two children
with ``wf.any``, a workflow child of a workflow, and a saga whose child step is a workflow."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from tasksaga.core import SagaContext, StepCondition, StepContext, TaskDefinition
from tasksaga.workflow import (
    ChildFailed,
    StepFailed,
    WorkflowCancelled,
    WorkflowContext,
    workflow,
)
from tests.unit.workflow_samples import Num, Out, Req, double, undo


class ZipIn(BaseModel):
    files: list[str]
    wait: bool = False  # sleep an hour between packing and sealing (the child stays running)


class Packed(BaseModel):
    count: int


class ZipOut(BaseModel):
    archive: str
    count: int


def _pack(ctx: StepContext[ZipIn]) -> Packed:
    return Packed(count=len(ctx.request.files))


def _seal(ctx: StepContext[ZipIn]) -> Packed:
    return Packed(count=len(ctx.request.files))


def _asked_to_wait(ctx: SagaContext[ZipIn]) -> bool:
    return ctx.request.wait


def _unpack(ctx: StepContext[ZipIn], data: Any) -> None:
    return None


zip_saga = TaskDefinition("WfCreateZip", queue="zip", request=ZipIn, response=ZipOut,
                          step_timeout_seconds=30)
zip_saga.step("Pack", order=1, data=Packed)(_pack)
zip_saga.compensation("Pack")(_unpack)
zip_saga.sleep("Hold", order=2, seconds=3600,
               condition=StepCondition("the request asks to wait", _asked_to_wait))
zip_saga.step("Seal", order=3, data=Packed)(_seal)
zip_saga.compensation("Seal")(_unpack)
zip_saga.response_builder(
    lambda ctx: ZipOut(archive="+".join(ctx.request.files) + ".zip",
                       count=ctx.data_of("Seal", Packed).count))


@workflow("WfArchive", queue="wf", request=Req, response=Out)
async def archive_flow(wf: WorkflowContext, req: Req) -> Out:
    """double, then the child (label ``wait``: it sleeps; ``undo``: compensate it after)."""
    first = await wf.step(double, Num(value=req.n))
    zipping = wf.child(zip_saga, ZipIn(files=["a", "b"], wait=req.label == "wait"))
    try:
        archive = await zipping
    except ChildFailed as failed:
        return Out(texts=["failed", failed.status, failed.child_task_id, failed.reason])
    except WorkflowCancelled:
        with wf.shield():
            await wf.step(undo, first)
        raise
    if req.label == "undo":
        await wf.compensate_child(zipping)
        return Out(values=[first.value], texts=["undone", archive.archive])
    return Out(values=[first.value, archive.count], texts=[archive.archive])


@workflow("WfArchiveByName", queue="wf", request=Req, response=Out)
async def by_name_flow(wf: WorkflowContext, req: Req) -> Out:
    """The child named by its type (``WfCreateZip``, or one not deployed)."""
    task_type = "WfCreateZip" if req.label == "x" else req.label
    try:
        archive = await wf.child(task_type, ZipIn(files=["c"]), response=ZipOut)
    except StepFailed as failed:  # a ChildFailed is a StepFailed
        return Out(texts=[type(failed).__name__, failed.error_type])
    return Out(texts=[archive.archive])


@workflow("WfFirstArchive", queue="wf", request=Req, response=Out)
async def first_archive_flow(wf: WorkflowContext, req: Req) -> Out:
    """WhenAny of a waiting child and a step, then WhenAll of two children."""
    first = await wf.any(wf.child(zip_saga, ZipIn(files=["slow"], wait=True)),
                         wf.step(double, Num(value=req.n)))
    both = await wf.all(wf.child(zip_saga, ZipIn(files=["x"])),
                        wf.child(zip_saga, ZipIn(files=["y", "z"])))
    return Out(values=[first.value], texts=[z.archive for z in both])


@workflow("WfInner", queue="wf", request=Req, response=Num)
async def inner_flow(wf: WorkflowContext, req: Req) -> Num:
    if req.label == "sleep":
        await wf.sleep(timedelta(hours=1))
    return await wf.step(double, Num(value=req.n))


@workflow("WfOuter", queue="wf", request=Req, response=Out)
async def outer_flow(wf: WorkflowContext, req: Req) -> Out:
    """A workflow child of a workflow; label ``undo`` asks it to compensate (it refuses)."""
    run = wf.child(inner_flow, Req(n=req.n + 1, label=req.label))
    inner = await run
    if req.label == "undo":
        try:
            await wf.compensate_child(run)
        except ChildFailed as refused:
            return Out(values=[inner.value], texts=[type(refused).__name__, refused.reason])
    return Out(values=[inner.value])


def _inner_request(ctx: SagaContext[Req]) -> Req:
    return Req(n=ctx.request.n * 10)


def _inner_value(ctx: SagaContext[Req]) -> Num:
    return ctx.data_of("Inner", Num)


# A DSL saga whose child step starts the workflow WfInner.
dsl_parent = TaskDefinition("WfDslParent", queue="q", request=Req, response=Num,
                            step_timeout_seconds=30)
dsl_parent.child_step("Inner", order=1, task=inner_flow, request=_inner_request)
dsl_parent.response_builder(_inner_value)

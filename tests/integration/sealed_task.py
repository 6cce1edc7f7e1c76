"""A task whose request, step data and response each carry a different marker derived from the
request's ``note`` (``TASKSAGA_TASK_MODULES`` of the encryption-at-rest test).

``Stamp`` returns the note reversed, which exists nowhere but in step data (the ExecuteStep of
``Echo`` carries it on to the worker in its step data); the response is the note upper-cased.
"""

from __future__ import annotations

from pydantic import BaseModel

from tasksaga.core import SagaContext, StepContext, TaskDefinition


class SealedRequest(BaseModel):
    note: str


class Stamp(BaseModel):
    reversed_note: str


class Echo(BaseModel):
    seen: str


class SealedResponse(BaseModel):
    shout: str
    stamp: str


sealed = TaskDefinition("SealedNote", queue="sealed", request=SealedRequest,
                        response=SealedResponse, step_timeout_seconds=30)


@sealed.step("Stamp", order=1)
def stamp(ctx: StepContext[SealedRequest]) -> Stamp:
    return Stamp(reversed_note=ctx.request.note[::-1])


@sealed.step("Echo", order=2)
def echo(ctx: StepContext[SealedRequest]) -> Echo:
    return Echo(seen=ctx.data(Stamp).reversed_note)


@sealed.response_builder
def respond(ctx: SagaContext[SealedRequest]) -> SealedResponse:
    return SealedResponse(shout=ctx.request.note.upper(), stamp=ctx.data(Stamp).reversed_note)

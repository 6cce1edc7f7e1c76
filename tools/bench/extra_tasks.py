"""TaskDefinitions of the bench's extra shapes (``--only extra``; TASKSAGA_TASK_MODULES).

- ``BenchPayloadInline``: Make returns 100 KB of step data inline (in its result, its
  StepCompleted event and Use's ExecuteStep); Use reads it and checks its length.
- ``BenchPayloadArtifact``: Make publishes 100 KB as an artifact (object store, by reference);
  Use opens it (verified chunks) and checks its length.
- ``BenchFanOut``: one for_each step over ``request.items`` integers; each instance returns its
  index, the response counts the distinct indices (the "every item ran once" check reads it).
- ``BenchSleep``: one durable sleep until ``request.wake_at_ms``, set by the generator.

Every response has ``steps`` (name -> [start, end]) like bench_tasks.py's, so the generator's
terminal-event consumer (ours.py) reads them all alike.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from typing import Any

from pydantic import BaseModel

from bench.bench_tasks import BenchRequest, StepTimes
from tasksaga.core import SagaContext, StepContext, TaskDefinition
from tasksaga.core.errors import NonRetryableError

QUEUE = "bench"
PAYLOAD_BYTES = 100_000
ARTIFACT = "blob"


class TimedResponse(BaseModel):
    steps: dict[str, list[float]]
    items: int = 0
    distinct_items: int = 0


class InlineBlob(BaseModel):
    start: float
    end: float
    blob: str


class FanRequest(BenchRequest):
    items: int = 1000


class UseTimes(StepTimes):
    """Use's times: a type of its own, so ``ctx.data`` of each step is unambiguous."""


class ItemDone(BaseModel):
    index: int


class SleepRequest(BenchRequest):
    wake_at_ms: int


def _times(ctx: SagaContext[Any]) -> TimedResponse:
    steps: dict[str, list[float]] = {}
    for name, raw in ctx.step_data_json.items():
        data = json.loads(raw)
        if isinstance(data, dict) and "start" in data:
            steps[name] = [data["start"], data["end"]]
    return TimedResponse(steps=steps)


def _payload_task(name: str) -> TaskDefinition:
    return TaskDefinition(name, queue=QUEUE, request=BenchRequest, response=TimedResponse,
                          max_retries=0)


BenchPayloadInline = _payload_task("BenchPayloadInline")


@BenchPayloadInline.step("Make", order=1, data=InlineBlob)
def make_inline(ctx: StepContext[BenchRequest]) -> InlineBlob:
    start = time.time()
    blob = base64.b64encode(os.urandom(PAYLOAD_BYTES * 3 // 4)).decode()
    return InlineBlob(start=start, end=time.time(), blob=blob)


@BenchPayloadInline.step("Use", order=2, data=UseTimes, reads=["Make"])
def use_inline(ctx: StepContext[BenchRequest]) -> UseTimes:
    start = time.time()
    size = len(ctx.data_of("Make", InlineBlob).blob)
    if size != PAYLOAD_BYTES:
        raise NonRetryableError(f"bench: Use got {size} bytes inline, expected {PAYLOAD_BYTES}")
    return UseTimes(start=start, end=time.time())


BenchPayloadInline.response_builder(_times)

BenchPayloadArtifact = _payload_task("BenchPayloadArtifact")


@BenchPayloadArtifact.step("Make", order=1, data=StepTimes, produces=[ARTIFACT])
def make_artifact(ctx: StepContext[BenchRequest]) -> StepTimes:
    start = time.time()
    ctx.artifacts.publish(ARTIFACT, io.BytesIO(os.urandom(PAYLOAD_BYTES)))
    return StepTimes(start=start, end=time.time())


@BenchPayloadArtifact.step("Use", order=2, data=UseTimes, consumes=[ARTIFACT])
def use_artifact(ctx: StepContext[BenchRequest]) -> UseTimes:
    start = time.time()
    size = sum(len(chunk) for chunk in ctx.artifacts.open(ARTIFACT))
    if size != PAYLOAD_BYTES:
        raise NonRetryableError(f"bench: Use read {size} bytes, expected {PAYLOAD_BYTES}")
    return UseTimes(start=start, end=time.time())


BenchPayloadArtifact.response_builder(_times)

BenchFanOut = TaskDefinition("BenchFanOut", queue=QUEUE, request=FanRequest,
                             response=TimedResponse, max_retries=0)


def _fan_items(ctx: SagaContext[FanRequest]) -> list[int]:
    return list(range(ctx.request.items))


@BenchFanOut.for_each("Each", order=1, items=_fan_items, data=ItemDone)
def each_item(ctx: StepContext[FanRequest]) -> ItemDone:
    return ItemDone(index=-1 if ctx.item_index is None else ctx.item_index)


def _fan_response(ctx: SagaContext[FanRequest]) -> TimedResponse:
    done = ctx.results_of("Each", ItemDone)
    return TimedResponse(steps={}, items=len(done),
                         distinct_items=len({item.index for item in done}))


BenchFanOut.response_builder(_fan_response)

BenchSleep = TaskDefinition("BenchSleep", queue=QUEUE, request=SleepRequest,
                            response=TimedResponse, max_retries=0)


def _wake_at(ctx: SagaContext[SleepRequest]) -> int:
    return ctx.request.wake_at_ms


BenchSleep.sleep("Nap", order=1, until=_wake_at)
BenchSleep.response_builder(_times)

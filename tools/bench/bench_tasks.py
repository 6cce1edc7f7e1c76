"""tasksaga TaskDefinitions of the benchmark's workloads (``TASKSAGA_TASK_MODULES``).

Steps are no-ops that record ``time.time()`` at their start and end in their step data; the
response carries every step's (start, end), so the generator computes dispatch latency from
the TaskCompleted event alone. ``fail_last`` in the request makes the last step fail (not
retryable), and every completed step is then compensated by a no-op compensation.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel

from bench.workloads import PARALLEL_STAGES, WORKLOADS
from tasksaga.core import SagaContext, StepContext, TaskDefinition
from tasksaga.core.definition import StepHandler
from tasksaga.core.errors import NonRetryableError

QUEUE = "bench"


class BenchRequest(BaseModel):
    payload: str
    fail_last: bool = False


class StepTimes(BaseModel):
    start: float
    end: float


class BenchResponse(BaseModel):
    steps: dict[str, list[float]]


def _step(last: bool) -> StepHandler:
    def run(ctx: StepContext[BenchRequest]) -> StepTimes:
        start = time.time()
        if last and ctx.request.fail_last:
            raise NonRetryableError("bench: the last step fails on purpose")
        return StepTimes(start=start, end=time.time())

    return run


def _undo(ctx: StepContext[Any], data: Any) -> None:
    return None


def _response(ctx: SagaContext[BenchRequest]) -> BenchResponse:
    steps: dict[str, list[float]] = {}
    for name, raw in ctx.step_data_json.items():
        times = json.loads(raw)
        steps[name] = [times["start"], times["end"]]
    return BenchResponse(steps=steps)


def _define(name: str, stages: tuple[tuple[str, ...], ...]) -> TaskDefinition:
    task = TaskDefinition(name, queue=QUEUE, request=BenchRequest, response=BenchResponse,
                          max_retries=0, cancellable=True)
    for order, stage in enumerate(stages, start=1):
        for step in stage:
            task.step(step, order=order, data=StepTimes)(_step(order == len(stages)))
            task.compensation(step)(_undo)
    task.response_builder(_response)
    return task


BenchLinear3 = _define("BenchLinear3", WORKLOADS["linear3"].stages)
BenchLinear10 = _define("BenchLinear10", WORKLOADS["linear10"].stages)
BenchParallel10 = _define("BenchParallel10", PARALLEL_STAGES)

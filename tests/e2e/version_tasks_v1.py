"""Version 1 of the e2e versioned task: Prepare -> Hold (waits for a gate file) -> Finish.
Each step's data names the version whose handler ran it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tasksaga.core import StepContext, TaskDefinition


class GateRequest(BaseModel):
    gate: str  # a file path: the Hold step waits until it exists


class RanBy(BaseModel):
    version: int


class Versions(BaseModel):
    steps: dict[str, int]


def versioned(version: int, first_step: str) -> TaskDefinition:
    task = TaskDefinition("VersionedE2E", queue="versioned-e2e", request=GateRequest,
                          response=Versions, version=version, step_timeout_seconds=120)

    @task.step(first_step, order=1)
    def prepare(ctx: StepContext[GateRequest]) -> RanBy:
        return RanBy(version=version)

    @task.compensation(first_step)
    def unprepare(ctx: StepContext[GateRequest], data: RanBy) -> None:
        return None

    @task.step("Hold", order=2)
    def hold(ctx: StepContext[GateRequest]) -> RanBy:
        deadline = time.monotonic() + 110
        while not Path(ctx.request.gate).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {ctx.request.gate} never opened")
            time.sleep(0.1)
        return RanBy(version=version)

    @task.step("Finish", order=3)
    def finish(ctx: StepContext[GateRequest]) -> RanBy:
        return RanBy(version=version)

    @task.response_builder
    def respond(ctx: Any) -> Versions:
        return Versions(steps={name: ctx.data_of(name, RanBy).version
                               for name in (first_step, "Hold", "Finish")})

    return task


versioned_v1 = versioned(1, "Prepare")

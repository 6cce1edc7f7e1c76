"""The task type of the SSE watchers benchmark (``bench.sse_watchers``).

Its first step waits for a gate file, so every watcher is connected before anything happens;
then it reports progress a few times and three no-op steps follow: the events and progress
the watchers measure are all produced while they watch.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel

from tasksaga.core import StepContext, TaskDefinition


class PulseRequest(BaseModel):
    gate: str  # a file path: the step starts its work once the file exists
    delay_s: float = 0.0  # then waits this long (the benchmark spreads the tasks' starts)
    beats: int = 5
    interval_s: float = 0.2


pulse = TaskDefinition("Pulse", queue="sse-bench", request=PulseRequest)


@pulse.step("Wait", order=1, timeout_seconds=600)
def wait(ctx: StepContext[PulseRequest]) -> None:
    gate = Path(ctx.request.gate)
    while not gate.exists():
        time.sleep(0.05)
    time.sleep(ctx.request.delay_s)
    for beat in range(1, ctx.request.beats + 1):
        ctx.heartbeat(beat / ctx.request.beats, f"beat {beat}")
        time.sleep(ctx.request.interval_s)


@pulse.step("First", order=2)
def first(ctx: StepContext[PulseRequest]) -> None:
    return None


@pulse.step("Second", order=3)
def second(ctx: StepContext[PulseRequest]) -> None:
    return None


@pulse.step("Third", order=4)
def third(ctx: StepContext[PulseRequest]) -> None:
    return None

#!/usr/bin/env python3
"""The replay cost of a workflow per event, with the orchestrator's cache of live bodies and
without it (every decision replays the whole history), for an N-step workflow.

    PYTHONPATH=services:examples:. python tools/workflow_replay_bench.py [STEPS] [--cached-only]

``--cached-only`` skips the run without the cache (quadratic: for 5,000 steps, a 10,000-event
history, it would replay 25 million events).

Pure: it runs decide_workflow and the driver directly, one step result per decision, with
no store or bus, so the figures are the driver's own cost (docs/workflows.md quotes them).
"""

from __future__ import annotations

import statistics
import sys
import time

from pydantic import BaseModel

from tasksaga.core import StepContext
from tasksaga.core import messages as msg
from tasksaga.core.state import TaskState, TaskStatus
from tasksaga.workflow import WorkflowContext, step, workflow
from tasksaga.workflow.decide import decide_workflow
from tasksaga.workflow.driver import WorkflowDriver
from tasksaga.workflow.replay import replay


class Count(BaseModel):
    steps: int
    value: int = 0


@step
def add_one(ctx: StepContext[Count], value: Count) -> Count:
    return Count(steps=value.steps, value=value.value + 1)


@workflow("BenchLoop", queue="bench", request=Count, response=Count)
async def bench_loop(wf: WorkflowContext, request: Count) -> Count:
    value = request
    for _ in range(request.steps):
        value = await wf.step(add_one, value)
    return value


def run(steps: int, cached: bool) -> tuple[list[float], int, float]:
    """Per-decision times (s), events replayed in all, seconds spent replaying."""
    state, events, times = TaskState(), [], []
    submit = msg.SubmitTask("bench-1", "BenchLoop", Count(steps=steps).model_dump_json(),
                            None, None, 0)
    decision, driver = decide_workflow(bench_loop, state, None, submit, 0, lambda: 0.0)
    per_decision: list[float] = []
    replayed, replay_seconds, now = 0, 0.0, 0
    while True:
        events += decision.events
        times += [now] * len(decision.events)
        state = decision.state
        if state.status is not TaskStatus.RUNNING:
            return per_decision, replayed, replay_seconds
        command = decision.commands[0]
        assert isinstance(command, msg.ExecuteStep)
        value = Count.model_validate_json(command.step_data[command.step])
        result = msg.StepSucceeded("bench-1", command.step, command.attempt,
                                   add_one.fn(None, value).model_dump_json(),  # type: ignore[arg-type]
                                   command.fencing_token)
        now += 1
        started = time.perf_counter()
        if not cached:
            driver = replay(bench_loop, events, times, lambda: 0.0)
            replayed += len(events)
            replay_seconds += time.perf_counter() - started
        assert isinstance(driver, WorkflowDriver)
        decision, driver = decide_workflow(bench_loop, state, driver, result, now, lambda: 0.0)
        per_decision.append(time.perf_counter() - started)


def main(argv: list[str]) -> int:
    numbers = [a for a in argv if not a.startswith("--")]
    steps = int(numbers[0]) if numbers else 1000
    for cached in (True,) if "--cached-only" in argv else (True, False):
        per_decision, replayed, replay_seconds = run(steps, cached)
        decisions = len(per_decision)
        history = 2 * steps + 2  # TaskSubmitted, StepDispatched + StepCompleted per step
        first = statistics.mean(per_decision[:50]) * 1e6
        last = statistics.mean(per_decision[-50:]) * 1e6
        label = "with the cache   " if cached else "without the cache"
        print(f"{label}: {decisions} decisions, {statistics.mean(per_decision) * 1e6:9.1f} us "
              f"per decision (first 50: {first:9.1f} us, last 50: {last:9.1f} us)")
        if not cached:
            print(f"{'':19}replayed {replayed} events in {replay_seconds:.2f} s: "
                  f"{replay_seconds / replayed * 1e6:.2f} us per replayed event; the last "
                  f"decision replays a history of ~{history} events")
        else:
            print(f"{'':19}no replay: {statistics.mean(per_decision) * 1e6 / 2:.2f} us per "
                  "event decided (2 events per decision)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

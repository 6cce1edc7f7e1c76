"""The benchmark's workload shapes, shared by tasksaga and the peers (pure, unit-tested).

A workload is a sequence of stages; the steps of a stage run in parallel, a stage starts when
the previous one is done. Steps are no-ops that record ``time.time()`` at their start and end,
so dispatch latency = start of a step - end of the last step of the stage before it.
"""

from __future__ import annotations

import itertools
import random
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PAYLOAD_BYTES = 300


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    task_type: str  # the tasksaga TaskDefinition name (tools/bench/bench_tasks.py)
    stages: tuple[tuple[str, ...], ...]
    fail_every: int = 0  # every n-th task fails at its last step and compensates (10 -> 10%)

    @property
    def step_names(self) -> list[str]:
        return [name for stage in self.stages for name in stage]

    @property
    def step_count(self) -> int:
        return len(self.step_names)

    @property
    def last_step(self) -> str:
        if len(self.stages[-1]) != 1:
            raise ValueError("a failing workload needs a single last step")
        return self.stages[-1][0]

    def fails(self, index: int) -> bool:
        """Whether the index-th task of a run fails at its last step (exactly 1 in n)."""
        return self.fail_every > 0 and index % self.fail_every == self.fail_every - 1

    def step_executions(self, fail: bool) -> int:
        """Step transitions a task makes: each forward step, and each compensation."""
        if not fail:
            return self.step_count
        return self.step_count + (self.step_count - 1)

    def expected_events(self, fail: bool) -> Counter[str]:
        """The event types (and counts) a tasksaga log must hold for one task of this shape."""
        steps = self.step_count
        if not fail:
            return Counter({"TaskSubmitted": 1, "StepDispatched": steps,
                            "StepCompleted": steps, "TaskCompleted": 1})
        done = steps - 1  # every step before the failing last one completed, then compensates
        return Counter({"TaskSubmitted": 1, "StepDispatched": steps, "StepCompleted": done,
                        "StepFailed": 1, "CompensationStarted": 1,
                        "StepCompensationDispatched": done, "StepCompensated": done,
                        "TaskFailed": 1})


def _linear(count: int) -> tuple[tuple[str, ...], ...]:
    return tuple((f"S{index:02d}",) for index in range(1, count + 1))


PARALLEL_STAGES: tuple[tuple[str, ...], ...] = (
    ("Fan",), tuple(f"P{index:02d}" for index in range(1, 11)), ("Join",)
)

WORKLOADS: dict[str, Workload] = {
    w.key: w
    for w in (
        Workload("linear3", "linear, 3 steps", "BenchLinear3", _linear(3)),
        Workload("linear10", "linear, 10 steps", "BenchLinear10", _linear(10)),
        Workload("parallel10", "fan-out of 10 parallel steps (1 + 10 + 1)", "BenchParallel10",
                 PARALLEL_STAGES),
        Workload("fail10", "linear, 10 steps, 10% fail at the last step and compensate",
                 "BenchLinear10", _linear(10), fail_every=10),
    )
}


def dispatch_latencies(
    stages: Sequence[Sequence[str]], times: Mapping[str, Sequence[float]]
) -> list[float]:
    """Start of each step - end of the last step of the previous stage, in seconds.

    ``times`` maps a step to (start, end). Steps of the first stage have no predecessor and
    yield nothing; a stage with a missing step yields nothing for the stage after it.
    """
    latencies: list[float] = []
    for before, stage in itertools.pairwise(stages):
        ends = [times[name][1] for name in before if name in times]
        if len(ends) != len(before):
            continue
        ready = max(ends)
        latencies.extend(times[name][0] - ready for name in stage if name in times)
    return latencies


def payload(seed: int, size: int = PAYLOAD_BYTES) -> str:
    """A ~``size``-byte request field, different per task (no compression-friendly repeats)."""
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=size))

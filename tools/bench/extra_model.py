"""The pure part of the bench's extra shapes (``--only extra``): their workloads, what their
logs must hold, and the arithmetic of their figures. No I/O, no clock (unit-tested in
tests/unit/test_bench_extra.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from bench.capacity import us_per_step
from bench.loadgen import percentile
from bench.workloads import Workload


@dataclass(frozen=True)
class FanOutWorkload(Workload):
    """One for_each step of ``items`` instances (bench/extra_tasks.py's BenchFanOut)."""

    items: int = 1000

    def step_executions(self, fail: bool) -> int:
        return self.items

    def expected_events(self, fail: bool) -> Counter[str]:
        return Counter({"TaskSubmitted": 1, "FanOutExpanded": 1, "StepDispatched": self.items,
                        "StepCompleted": self.items, "FanOutCompleted": 1,
                        "TaskCompleted": 1})


@dataclass(frozen=True)
class SleepWorkload(Workload):
    """One durable sleep, completed by the orchestrator's timer (BenchSleep)."""

    def step_executions(self, fail: bool) -> int:
        return 1

    def expected_events(self, fail: bool) -> Counter[str]:
        return Counter({"TaskSubmitted": 1, "StepWaiting": 1, "StepCompleted": 1,
                        "TaskCompleted": 1})


PAYLOAD_STAGES: tuple[tuple[str, ...], ...] = (("Make",), ("Use",))
PAYLOAD_INLINE = Workload("payload-inline", "100 KB of step data inline (Make -> Use)",
                          "BenchPayloadInline", PAYLOAD_STAGES)
PAYLOAD_ARTIFACT = Workload("payload-artifact",
                            "100 KB as an artifact, by object-store reference (Make -> Use)",
                            "BenchPayloadArtifact", PAYLOAD_STAGES)


def fan_out_workload(items: int) -> FanOutWorkload:
    return FanOutWorkload("fanout", f"one task, a for_each of {items} items", "BenchFanOut",
                          (("Each",),), items=items)


SLEEP = SleepWorkload("sleep", "a durable sleep until a given time", "BenchSleep", (("Nap",),))


# -- figures --------------------------------------------------------------------------------------


def cost_per_step(cpu_cores: Mapping[str, float], transitions_per_s: float) -> dict[str, float]:
    """CPU µs per step transition of each process group; empty when no step completed (a
    division by zero would say nothing true)."""
    if transitions_per_s <= 0:
        return {}
    return us_per_step(cpu_cores, transitions_per_s)


def throughput_ratio(scaled: float | None, base: float | None) -> float | None:
    """``scaled / base`` rounded to 2 decimals; None when either is missing or zero."""
    if not scaled or not base:
        return None
    return round(scaled / base, 2)


def lateness_ms(due_ms: Mapping[str, int], woke_ms: Mapping[str, float]) -> list[float]:
    """Actual wake - intended due time of each timer (ms), for the tasks that have both."""
    return [woke_ms[task] - due for task, due in due_ms.items() if task in woke_ms]


def wake_times(task_ids: Sequence[str], first_s: float, rate: float) -> dict[str, int]:
    """Due time (epoch ms) of each sleeping task: the first at ``first_s``, then one every
    ``1 / rate`` s in the given order."""
    if rate <= 0:
        raise ValueError(f"the wake rate must be positive, got {rate}")
    return {task: int((first_s + index / rate) * 1000) for index, task in enumerate(task_ids)}


def rate_of(moments_ms: Iterable[float]) -> float:
    """Events per second between the first and the last of ``moments_ms`` (0 for < 2)."""
    ordered = sorted(moments_ms)
    if len(ordered) < 2 or ordered[-1] <= ordered[0]:
        return 0.0
    return (len(ordered) - 1) / ((ordered[-1] - ordered[0]) / 1000)


@dataclass(frozen=True)
class Spread:
    count: int
    p50: float
    p99: float
    max: float
    mean: float

    def to_json(self) -> dict[str, float | int]:
        def r(v: float) -> float:
            return round(v, 1) if math.isfinite(v) else -1.0

        return {"count": self.count, "p50": r(self.p50), "p99": r(self.p99),
                "max": r(self.max), "mean": r(self.mean)}


def spread(values: Iterable[float]) -> Spread:
    """Nearest-rank p50 / p99, the maximum and the mean of ``values`` (nan when empty)."""
    ordered = sorted(values)
    if not ordered:
        return Spread(0, math.nan, math.nan, math.nan, math.nan)
    return Spread(len(ordered), percentile(ordered, 50), percentile(ordered, 99), ordered[-1],
                  sum(ordered) / len(ordered))


def partitions_per_member(
    members: Sequence[tuple[str, Sequence[tuple[str, int]]]],
) -> dict[str, dict[str, list[int]]]:
    """A consumer group's assignment as member -> topic -> sorted partitions, from the
    (client id, [(topic, partition)]) pairs of its description."""
    found: dict[str, dict[str, list[int]]] = {}
    for client_id, assigned in members:
        topics = found.setdefault(client_id, {})
        for topic, partition in assigned:
            topics.setdefault(topic, []).append(partition)
    return {m: {t: sorted(p) for t, p in sorted(ts.items())} for m, ts in sorted(found.items())}


def owned_twice(spread_: Mapping[str, Mapping[str, Sequence[int]]]) -> list[str]:
    """(topic, partition)s that more than one member of a group holds: none in a healthy
    group (a partition, hence a task, has one owner at a time)."""
    owners: Counter[tuple[str, int]] = Counter(
        (topic, p) for topics in spread_.values() for topic, ps in topics.items() for p in ps)
    return sorted(f"{t}[{p}]" for (t, p), n in owners.items() if n > 1)


def rss_kib(status_text: str) -> int | None:
    """VmRSS (KiB) from the text of /proc/<pid>/status; None when absent (a zombie)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


# -- where a task's end-to-end time goes ---------------------------------------------------------

#: The hops of a linear task, between the moments the bench can see (epoch seconds): the
#: intended send, the send, the orchestrator's transaction that recorded TaskSubmitted (its
#: start: ``recorded_at`` is ``now()``), the first step's start and the last step's end (the
#: worker's clock, in the step data), the transaction that recorded TaskCompleted, and the
#: generator's receipt of it.
HOPS: tuple[tuple[str, str], ...] = (
    ("schedule", "intended send → sent (the generator)"),
    ("submit", "sent → TaskSubmitted's transaction (Kafka, orchestrator poll)"),
    ("dispatch", "→ first step starts (commit, publish, Kafka, worker poll)"),
    ("steps", "first step starts → last step ends (the steps and what runs between them)"),
    ("result", "last step ends → TaskCompleted's transaction (result produce, Kafka, poll)"),
    ("outcome", "→ the generator receives TaskCompleted (commit, publish, Kafka)"),
    ("end-to-end", "intended send → received"),
)


@dataclass(frozen=True)
class TaskMoments:
    intended: float
    sent: float
    submitted_tx: float
    first_start: float
    last_end: float
    completed_tx: float
    received: float

    def hops(self) -> tuple[float, ...]:
        """Each hop of ``HOPS``, in ms (clocks of one machine: no skew between them)."""
        moments = (self.intended, self.sent, self.submitted_tx, self.first_start,
                   self.last_end, self.completed_tx, self.received)
        between = tuple((b - a) * 1000 for a, b in pairwise(moments))
        return (*between, (self.received - self.intended) * 1000)


def hop_breakdown(tasks: Iterable[TaskMoments]) -> dict[str, dict[str, float]]:
    """p50 / p90 / p99 (nearest rank) of each hop over ``tasks``; empty when there are none."""
    columns = list(zip(*(task.hops() for task in tasks), strict=False))
    if not columns:
        return {}
    found = {}
    for (key, _), values in zip(HOPS, columns, strict=True):
        ordered = sorted(values)
        found[key] = {f"p{q}": round(percentile(ordered, q), 2) for q in (50, 90, 99)}
    return found

"""The rate sweep of one system on one workload: probe, search, and the half-rate point.

1. Probe: offer a deliberately high rate for a few seconds; what the system completes while
   overloaded estimates its capacity C.
2. Search (``rate_search.next_rate``): start at 0.8 C, go up or down until a sustainable rate and
   an unsustainable one are within 10% of each other (or the point budget is spent; until a
   pass and a fail above it bracket the limit, the search goes on past the budget, so the
   maximum is neither missing nor just the highest rate the budget reached).
3. Latency at half of the maximum sustainable rate (the targets are stated there).

Every system goes through the same function with the same plan; only the ``System`` differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bench import loadgen, procstat, rate_search
from bench.loadgen import StepPlan, StepResult, TaskRecord, Tracker
from bench.workloads import Workload


class System(Protocol):
    name: str

    def new_task(self, run: str, index: int, intended: float) -> TaskRecord: ...

    def submit(self, record: TaskRecord) -> None: ...

    def cpu_groups(self) -> list[procstat.ProcessGroup]: ...


@dataclass(frozen=True)
class SweepPlan:
    warmup_s: float
    measure_s: float
    probe_transitions_per_s: float  # the probe's offered load, in step transitions per second
    max_points: int = 6
    drain_s: float = 30.0


def _drain(tracker: Tracker, timeout_s: float) -> bool:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if tracker.backlog() <= 0:
            return True
        time.sleep(0.05)
    return False


def sweep(
    system: System,
    workload: Workload,
    tracker: Tracker,
    plan: SweepPlan,
    log: Callable[[str], None] = print,
) -> dict[str, object]:
    counter = 0
    all_records: list[TaskRecord] = []

    def step(rate: float, label: str, warmup_s: float, measure_s: float,
             abort_backlog_s: float = 3.0) -> StepResult:
        nonlocal counter
        counter += 1
        run = f"{system.name[:4]}{workload.key}-{counter:02d}"
        created: list[TaskRecord] = []

        def new_task(index: int, intended: float) -> TaskRecord:
            record = system.new_task(run, index, intended)
            created.append(record)
            return record

        result = loadgen.run_rate_step(
            _Adapter(system), tracker,
            StepPlan(rate, warmup_s, measure_s, drain_s=plan.drain_s,
                     abort_backlog_s=abort_backlog_s),
            new_task, lambda r: workload.step_executions(r.fail), log,
        )
        all_records.extend(created[:result.sent])
        drained = _drain(tracker, plan.drain_s)
        log(f"  {system.name:9} {workload.key:10} {label:6} offered {rate:8.1f}/s "
            f"achieved {result.achieved:8.1f}/s  e2e p50 {result.e2e.p50 * 1000:7.1f} ms "
            f"p99 {result.e2e.p99 * 1000:8.1f} ms  dispatch p50 "
            f"{result.dispatch.p50 * 1000:6.2f} ms  "
            f"{'OK ' if result.verdict.sustainable else 'NO '} {result.verdict.reason}"
            + ("" if drained else "  (backlog not drained)"))
        return result

    probe_rate = plan.probe_transitions_per_s / workload.step_executions(False)
    probe_started = time.time()
    probe = step(probe_rate, "probe", min(plan.warmup_s, 1.5), plan.measure_s / 2, 1.5)
    # Busy from the first send until the backlog drained: completed / elapsed is the capacity
    # (completions inside the window alone undercount systems that finish tasks in bursts).
    # A probe that kept up on its short window says only that capacity is at least what it
    # achieved; the search starts below that and climbs, rather than guessing above it.
    busy = time.time() - probe_started - 0.2
    capacity = probe.completed / busy if not probe.verdict.sustainable else probe.achieved
    log(f"    capacity estimate {capacity:.1f} tasks/s")
    start = max(capacity * 0.8, 1.0)
    history: list[tuple[float, bool]] = []
    points: list[dict[str, object]] = [{"label": "probe", **probe.to_json()}]
    while (rate := rate_search.next_rate(history, start, up=1.2, down=0.8, resolution=1.1,
                                         max_points=plan.max_points)) is not None:
        result = step(rate, "search", plan.warmup_s, plan.measure_s)
        history.append((rate, result.verdict.sustainable))
        points.append({"label": "search", **result.to_json()})
    best = rate_search.max_sustainable(history)
    half: dict[str, object] | None = None
    if best is not None:
        result = step(best / 2, "half", plan.warmup_s, plan.measure_s)
        half = {"label": "half", **result.to_json()}
        points.append(half)
    best_point = next((p for p in points if p["label"] == "search" and p["offered"] == best),
                      None)
    return {
        "system": system.name, "workload": workload.key, "max_rate": best,
        "max_point": best_point, "half_point": half, "points": points,
        "records": all_records,
    }


class _Adapter:
    """A ``System`` as the ``loadgen.Driver`` the step runner expects."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.name = system.name

    def submit(self, record: TaskRecord) -> None:
        self.system.submit(record)

    def cpu_groups(self) -> list[procstat.ProcessGroup]:
        return self.system.cpu_groups()

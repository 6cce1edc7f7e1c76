"""Open-loop load generation: send at a fixed offered rate, measure from the intended send time.

A closed-loop generator (send the next request when the previous one answered) slows down
exactly when the system does, so it never sees the queueing it causes: "coordinated
omission". Here every request has an *intended* send time ``start + i / rate`` fixed before
the run; if the generator or the system falls behind, the delay counts in the latency, because
latency = completion time - intended send time, never - actual send time.

The pure part (schedule, percentiles, accounting; the sustainability verdict and the rate
search are in ``bench.rate_search``) has no clock and no I/O and is unit-tested
(tests/unit/test_bench_loadgen.py).
``run_rate_step`` drives one offered rate against a ``Driver`` (tasksaga, DBOS or Celery).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bench import procstat
from bench.rate_search import Verdict, sustainability

# -- the schedule ---------------------------------------------------------------------------------


def intended_times(start: float, rate: float, duration_s: float) -> list[float]:
    """Send times of an open loop: one every ``1/rate`` seconds from ``start`` for ``duration_s``.

    The i-th request is due at ``start + i / rate`` (no drift from accumulating sleeps).
    """
    if rate <= 0 or duration_s <= 0:
        return []
    count = max(1, round(rate * duration_s))
    return [start + index / rate for index in range(count)]


def due_count(times: Sequence[float], now: float, already_sent: int) -> int:
    """How many more of ``times`` are due at ``now`` after ``already_sent`` were sent.

    An open loop that fell behind sends every overdue request at once (catching up); it never
    skips one or shifts the rest of the schedule.
    """
    due = already_sent
    while due < len(times) and times[due] <= now:
        due += 1
    return due - already_sent


# -- latency accounting ---------------------------------------------------------------------------


def latencies_from_intended(
    intended: Sequence[float], completed: Sequence[float | None]
) -> list[float]:
    """Completion - intended send time; a request that never completed counts as infinite."""
    if len(intended) != len(completed):
        raise ValueError("one completion (or None) per intended send time")
    return [math.inf if done is None else done - due
            for due, done in zip(intended, completed, strict=True)]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of an ascending sequence; nan when empty.

    Nearest rank returns an observed value (never an interpolation between two), which is
    what a latency percentile should be: "99% of requests took at most this long".
    """
    if not 0 <= q <= 100:
        raise ValueError("q is a percentage in [0, 100]")
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float

    def as_ms(self) -> dict[str, float]:
        return {"p50": self.p50 * 1000, "p95": self.p95 * 1000, "p99": self.p99 * 1000,
                "max": self.max * 1000}


def summarize(values: Iterable[float]) -> LatencySummary:
    ordered = sorted(values)
    if not ordered:
        nan = math.nan
        return LatencySummary(0, nan, nan, nan, nan, nan)
    finite = [v for v in ordered if math.isfinite(v)]
    mean = sum(finite) / len(finite) if len(finite) == len(ordered) else math.inf
    return LatencySummary(len(ordered), percentile(ordered, 50), percentile(ordered, 95),
                          percentile(ordered, 99), ordered[-1], mean)


# -- throughput and backlog -----------------------------------------------------------------------


def count_in_window(times: Iterable[float | None], start: float, end: float) -> int:
    return sum(1 for t in times if t is not None and start <= t < end)


def achieved_rate(completions: Iterable[float | None], start: float, end: float) -> float:
    """Completions per second inside [start, end)."""
    if end <= start:
        raise ValueError("empty window")
    return count_in_window(completions, start, end) / (end - start)


def backlog_at(sent: Sequence[float], completed: Sequence[float | None], moment: float) -> int:
    """Requests sent by ``moment`` and not completed by then."""
    return sum(1 for s, c in zip(sent, completed, strict=True)
               if s <= moment and (c is None or c > moment))


def slope(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (time, value) samples; 0 for fewer than two distinct times."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in samples)
    if var_t == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in samples) / var_t


# -- running one offered rate against a system ----------------------------------------------------


@dataclass
class TaskRecord:
    task_id: str
    intended: float
    fail: bool
    sent: float | None = None
    completed: float | None = None
    outcome: str | None = None
    dispatch: list[float] = field(default_factory=list)


class Tracker:
    """Every request of a run: intended, sent and completed times (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: dict[str, TaskRecord] = {}
        self.duplicates = 0
        self._sent = 0
        self._done = 0

    def add(self, record: TaskRecord) -> None:
        with self._lock:
            self.records[record.task_id] = record

    def mark_sent(self, task_id: str, at: float) -> None:
        with self._lock:
            self.records[task_id].sent = at
            self._sent += 1

    def complete(self, task_id: str, at: float, outcome: str,
                 dispatch: Sequence[float] = ()) -> None:
        with self._lock:
            record = self.records.get(task_id)
            if record is None:
                return  # a task of another run (shared topics are never expected)
            if record.completed is not None:
                self.duplicates += 1  # at-least-once delivery; counted, not re-applied
                return
            record.completed = at
            record.outcome = outcome
            record.dispatch = list(dispatch)
            self._done += 1

    def backlog(self) -> int:
        with self._lock:
            return self._sent - self._done

    def done(self) -> int:
        with self._lock:
            return self._done


class Driver(Protocol):
    """One system under test as the generator sees it."""

    name: str

    def submit(self, record: TaskRecord) -> None:
        """Send one task now; report its completion later with ``tracker.complete``."""

    def cpu_groups(self) -> list[procstat.ProcessGroup]:
        """The processes whose CPU the report attributes (its own and the shared servers)."""


@dataclass
class StepResult:
    offered: float
    achieved: float
    sent: int
    completed: int
    backlog_slope: float
    final_backlog: int
    verdict: Verdict
    e2e: LatencySummary
    dispatch: LatencySummary
    send_lag: LatencySummary
    transitions_per_s: float
    cpu: dict[str, float]
    aborted: bool = False

    def to_json(self) -> dict[str, object]:
        def lat(s: LatencySummary) -> dict[str, float | int]:
            return {"count": s.count, **{k: _finite(v) for k, v in s.as_ms().items()}}

        return {
            "offered": self.offered, "achieved": self.achieved, "sent": self.sent,
            "completed": self.completed, "backlog_slope": self.backlog_slope,
            "final_backlog": self.final_backlog, "sustainable": self.verdict.sustainable,
            "reason": self.verdict.reason, "e2e_ms": lat(self.e2e),
            "dispatch_ms": lat(self.dispatch), "send_lag_ms": lat(self.send_lag),
            "transitions_per_s": self.transitions_per_s, "cpu": self.cpu,
            "aborted": self.aborted,
        }


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -1.0


@dataclass(frozen=True)
class StepPlan:
    rate: float
    warmup_s: float
    measure_s: float
    drain_s: float = 20.0
    abort_backlog_s: float = 3.0  # stop sending once the backlog exceeds this much offered load


def send_on_schedule(
    submit: Callable[[TaskRecord], None], tracker: Tracker, records: Sequence[TaskRecord],
    schedule: Sequence[float], overloaded: Callable[[], bool] = lambda: False,
) -> tuple[int, bool]:
    """Send each record at its intended time, open loop: what is overdue goes at once and
    the schedule never shifts. ``overloaded`` is asked every 0.2 s; True stops the sending.
    Returns (records sent, stopped as overloaded)."""
    sent = 0
    last_check = 0.0
    while sent < len(records):
        now = time.time()
        due = due_count(schedule, now, sent)
        if due == 0:
            time.sleep(min(schedule[sent] - now, 0.005))
            continue
        for record in records[sent:sent + due]:
            submit(record)
            tracker.mark_sent(record.task_id, time.time())
        sent += due
        if now - last_check > 0.2:
            last_check = now
            if overloaded():
                return sent, True
    return sent, False


def run_rate_step(
    driver: Driver,
    tracker: Tracker,
    plan: StepPlan,
    new_task: Callable[[int, float], TaskRecord],
    transitions_of: Callable[[TaskRecord], int],
    log: Callable[[str], None] = print,
) -> StepResult:
    """Offer ``plan.rate`` tasks/s for warm-up + measurement, wait for the drain, measure."""
    total = plan.warmup_s + plan.measure_s
    start = time.time() + 0.2
    schedule = intended_times(start, plan.rate, total)
    window = (start + plan.warmup_s, start + total)
    records = [new_task(i, t) for i, t in enumerate(schedule)]
    for record in records:
        tracker.add(record)
    groups = driver.cpu_groups()
    samples: list[tuple[float, float]] = []
    stop_sampling = threading.Event()
    cpu_before: dict[str, procstat.Snapshot] = {}
    cpu_after: dict[str, procstat.Snapshot] = {}

    def sampler() -> None:
        while not stop_sampling.is_set():
            now = time.time()
            if not cpu_before and now >= window[0]:
                cpu_before.update(procstat.snapshot(groups))
            if window[0] <= now <= window[1]:
                samples.append((now, float(tracker.backlog())))
            if now > window[1]:
                cpu_after.update(procstat.snapshot(groups))
                return
            stop_sampling.wait(0.1)

    sampling = threading.Thread(target=sampler, name="backlog-sampler", daemon=True)
    sampling.start()
    abort_at = max(200.0, plan.abort_backlog_s * plan.rate)

    def overloaded() -> bool:
        if tracker.backlog() <= abort_at:
            return False
        log(f"    backlog {tracker.backlog()} > {abort_at:.0f}: overloaded, stop sending")
        return True

    sent, aborted = send_on_schedule(driver.submit, tracker, records, schedule, overloaded)
    stopped = time.time()
    records = records[:sent]
    drain_deadline = time.time() + plan.drain_s
    while time.time() < drain_deadline and any(r.completed is None for r in records):
        time.sleep(0.05)
    stop_sampling.set()
    sampling.join(timeout=2)
    if not cpu_after:
        cpu_after.update(procstat.snapshot(groups))
    if not cpu_before:
        cpu_before.update(cpu_after)

    if aborted:  # measure what the system did while it was overloaded, up to the abort
        window = (start + min(plan.warmup_s, (stopped - start) / 3), stopped)
    measured = [r for r in records if window[0] <= r.intended < window[1]]
    end = min(window[1], time.time())
    achieved = achieved_rate((r.completed for r in records), window[0], end) \
        if end > window[0] else 0.0
    e2e = summarize(latencies_from_intended([r.intended for r in measured],
                                            [r.completed for r in measured]))
    dispatch = summarize(d for r in measured for d in r.dispatch)
    lag = summarize((r.sent or r.intended) - r.intended for r in measured)
    done_in_window = [r for r in records if r.completed is not None
                      and window[0] <= r.completed < end]
    transitions = sum(transitions_of(r) for r in done_in_window) / max(end - window[0], 1e-9)
    final_backlog = int(samples[-1][1]) if samples else tracker.backlog()
    growth = slope(samples)
    verdict = sustainability(
        plan.rate, achieved, growth, final_backlog,
        completed_all=all(r.completed is not None for r in records),
        window_s=max(end - window[0], 1e-3),
    )
    if aborted:
        verdict = Verdict(False, f"overloaded: backlog passed {abort_at:.0f}")
    return StepResult(
        offered=plan.rate, achieved=achieved, sent=sent,
        completed=sum(1 for r in records if r.completed is not None),
        backlog_slope=growth, final_backlog=final_backlog, verdict=verdict, e2e=e2e,
        dispatch=dispatch, send_lag=lag, transitions_per_s=transitions,
        cpu=procstat.shares(cpu_before, cpu_after), aborted=aborted,
    )

"""The services' Prometheus metrics, as OpenTelemetry instruments (see telemetry.py).

Labels are bounded: task types, step names, statuses and outcomes come from the task
definitions and the code, consumer groups and partitions from the deployment. Task ids,
tenants, URLs and error messages never become labels.

- ``StepMetrics`` (orchestrator): step durations, retries, failures and compensations, from
  the events it has just committed. A step's duration is the span between its dispatch and
  its answer as the events record them (``dispatched_at_ms`` .. ``completed_at_ms`` /
  ``failed_at_ms``), not a wall clock read here.
- ``StoreSampler`` (orchestrator): tasks by state, outbox backlog and age, projection lag,
  sampled from Postgres every ``interval`` (a scrape only reads the latest sample).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import ConnectionPool

from tasksaga.adapters.projections import projection_lag
from tasksaga.core import events as ev
from tasksaga.core.fan_out_names import step_label  # instances count under their step

log = logging.getLogger(__name__)

# Dispatch times remembered for steps not answered yet; past this the oldest are forgotten
# (their duration is then not observed, nothing else is lost).
MAX_PENDING_DISPATCHES = 100_000
# Seconds: from a fast in-process step to a long video transcode.
STEP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                         60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class StepObservation:
    """One metric sample an event gives: ``kind`` is duration, retry, failure or
    compensation; ``value`` is seconds for a duration, 1 for the counters."""

    kind: str
    task_type: str
    step: str
    outcome: str
    value: float = 1.0


@dataclass
class DispatchBook:
    """When each unanswered attempt was dispatched, bounded (oldest forgotten first)."""

    limit: int = MAX_PENDING_DISPATCHES
    _at: OrderedDict[tuple[str, str, int], int] = field(default_factory=OrderedDict)

    def put(self, key: tuple[str, str, int], at_ms: int) -> None:
        self._at[key] = at_ms
        self._at.move_to_end(key)
        while len(self._at) > self.limit:
            self._at.popitem(last=False)

    def pop(self, key: tuple[str, str, int]) -> int | None:
        return self._at.pop(key, None)

    def __len__(self) -> int:
        return len(self._at)


def step_observations(book: DispatchBook, task_id: str, task_type: str,
                      events: Iterable[object]) -> list[StepObservation]:
    """The samples of a task's newly committed events (``book`` remembers dispatches)."""
    found: list[StepObservation] = []

    def answered(step: str, attempt: int, at_ms: int, outcome: str) -> None:
        dispatched = book.pop((task_id, step, attempt))
        if dispatched is not None:
            found.append(StepObservation("duration", task_type, step_label(step), outcome,
                                         max(at_ms - dispatched, 0) / 1000))

    for event in events:
        match event:
            case ev.StepDispatched(step=step, attempt=attempt, dispatched_at_ms=at):
                book.put((task_id, step, attempt), at)
            case ev.StepCompleted(step=step, attempt=attempt, completed_at_ms=at):
                answered(step, attempt, at, "completed")
            case ev.StepFailed(step=step, attempt=attempt, failed_at_ms=at, will_retry=retry):
                outcome = "retrying" if retry else "failed"
                answered(step, attempt, at, outcome)
                found.append(StepObservation("failure", task_type, step_label(step), outcome))
            case ev.StepRetryScheduled(step=step):
                found.append(StepObservation("retry", task_type, step_label(step), "scheduled"))
            case ev.StepCompensated(step=step):
                found.append(StepObservation("compensation", task_type, step_label(step),
                                             "compensated"))
            case ev.StepCompensationFailed(step=step, will_retry=retry):
                found.append(StepObservation("compensation", task_type, step_label(step),
                                             "retrying" if retry else "failed"))
    return found


class StepMetrics:
    def __init__(self, meter: Any, max_pending: int = MAX_PENDING_DISPATCHES) -> None:
        self._book = DispatchBook(max_pending)
        self._duration = meter.create_histogram(
            "tasksaga.step.duration", unit="s",
            description="step attempt duration, dispatch to answer, by task type, step and "
                        "outcome", explicit_bucket_boundaries_advisory=STEP_DURATION_BUCKETS)
        self._counters = {
            "retry": meter.create_counter("tasksaga.step.retries",
                                          description="step retries scheduled"),
            "failure": meter.create_counter("tasksaga.step.failures",
                                            description="failed step attempts (outcome "
                                                        "retrying or failed)"),
            "compensation": meter.create_counter(
                "tasksaga.step.compensations",
                description="step compensations by outcome (compensated, retrying, failed)"),
        }

    def record(self, written: Sequence[tuple[str, str, Sequence[object]]]) -> None:
        """Record what a committed transaction wrote: (task id, task type, events)."""
        for task_id, task_type, events in written:
            for sample in step_observations(self._book, task_id, task_type, events):
                labels = {"task_type": sample.task_type, "step": sample.step,
                          "outcome": sample.outcome}
                if sample.kind == "duration":
                    self._duration.record(sample.value, labels)
                else:
                    self._counters[sample.kind].add(1, labels)


_TASKS_BY_STATE = "SELECT task_type, status, count(*) FROM task_status GROUP BY 1, 2"
_OUTBOX = ("SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)),"
           " 0)::float8 FROM outbox")


class StoreSampler:
    """Gauges read from Postgres by ``sample`` (a thread calls it every few seconds)."""

    def __init__(self, pool: ConnectionPool, meter: Any) -> None:
        self._pool = pool
        self.tasks: dict[tuple[str, str], int] = {}
        self.outbox_rows = 0
        self.outbox_age_s = 0.0
        self.projection_lag_s = 0.0
        self.projection_lag_events = 0
        self.sampled = False
        meter.create_observable_gauge(
            "tasksaga.tasks", callbacks=[self._observe_tasks],
            description="tasks by task type and state (the task_status projection)")
        self._gauge(meter, "tasksaga.outbox.backlog", "outbox rows not published yet",
                    lambda: self.outbox_rows)
        self._gauge(meter, "tasksaga.outbox.oldest_age", "age of the oldest unpublished "
                    "outbox row (0: empty)", lambda: self.outbox_age_s, unit="s")
        self._gauge(meter, "tasksaga.projection.lag", "age of the oldest committed event "
                    "not projected yet", lambda: self.projection_lag_s, unit="s")
        self._gauge(meter, "tasksaga.projection.lag_events", "committed events not "
                    "projected yet", lambda: self.projection_lag_events)

    def sample(self) -> None:
        with self._pool.connection() as conn:
            tasks = {(str(t), str(s)): int(n)
                     for t, s, n in conn.execute(_TASKS_BY_STATE).fetchall()}
            row = conn.execute(_OUTBOX).fetchone()
        assert row is not None
        lag = projection_lag(self._pool)
        # States no task is in any more read 0 rather than disappear from the dashboard.
        self.tasks = {**dict.fromkeys(self.tasks, 0), **tasks}
        self.outbox_rows, self.outbox_age_s = int(row[0]), max(float(row[1]), 0.0)
        self.projection_lag_s, self.projection_lag_events = lag.seconds, lag.events
        self.sampled = True

    def _observe_tasks(self, _options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        return [Observation(n, {"task_type": t, "state": s}) for (t, s), n in self.tasks.items()]

    def _gauge(self, meter: Any, name: str, description: str, read: Any,
               unit: str = "") -> None:
        from opentelemetry.metrics import Observation

        def observe(_options: Any) -> list[Any]:
            return [Observation(read())] if self.sampled else []

        meter.create_observable_gauge(name, callbacks=[observe], description=description,
                                      unit=unit)

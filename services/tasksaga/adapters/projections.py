"""Projections of the event log: task status, step records, condition snapshots, audit.

The projector reads events in (transaction id, position) order and only those written by
transactions older than the oldest one still running. Positions come from a sequence, so a
transaction can commit position 10 after another committed 11; a reader that followed
positions alone would pass 10 by forever. No transaction that is still running can have a
transaction id below the snapshot's xmin, so nothing can later appear behind the checkpoint.

Rows are derived from the aggregate's own fold (``evolve``), so status rules live in one place,
and timestamps come from the events, so a rebuild produces identical tables.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.core import events as ev
from tasksaga.core.audit import describe, step_of
from tasksaga.core.state import TaskState, evolve

PROJECTION = "task_projections"
PROJECTION_TABLES = ("task_status", "step_records", "condition_snapshots", "audit_entries")
_LOCK_KEY = 7_201_502


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class Projector:
    def __init__(self, pool: ConnectionPool, codec: AvroCodec, cache_size: int = 10_000) -> None:
        self._pool = pool
        self._codec = codec
        self._states: OrderedDict[str, TaskState] = OrderedDict()
        self._cache_size = cache_size

    def catch_up(self, batch_size: int = 2000) -> int:
        """Project the next batch of visible events; returns how many were projected."""
        with self._pool.connection() as conn, conn.transaction():
            locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_LOCK_KEY,)).fetchone()
            if not locked or not locked[0]:
                return 0  # another process is projecting
            conn.execute(
                "INSERT INTO projection_checkpoints (name) VALUES (%s) ON CONFLICT DO NOTHING",
                (PROJECTION,),
            )
            checkpoint = conn.execute(
                "SELECT last_tx_id, last_position FROM projection_checkpoints WHERE name = %s",
                (PROJECTION,),
            ).fetchone()
            assert checkpoint is not None
            rows = conn.execute(
                "SELECT position, stream_id, version, payload, tx_id FROM events"
                " WHERE (tx_id, position) > (%s::xid8, %s)"
                " AND tx_id < pg_snapshot_xmin(pg_current_snapshot())"
                " ORDER BY tx_id, position LIMIT %s",
                (checkpoint[0], checkpoint[1], batch_size),
            ).fetchall()
            if not rows:
                return 0
            try:
                self._project_batch(conn, rows)
            except Exception:
                self._states.clear()  # the transaction rolls back: cached states are ahead
                raise
            last = rows[-1]
            conn.execute(
                "UPDATE projection_checkpoints SET last_tx_id = %s, last_position = %s,"
                " updated_at = now() WHERE name = %s",
                (last[4], last[0], PROJECTION),
            )
            return len(rows)

    def catch_up_fully(self) -> int:
        total = 0
        while count := self.catch_up():
            total += count
        return total

    def reset(self) -> None:
        """Empty the projection tables and the checkpoint (the event log is untouched)."""
        self._states.clear()
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(f"TRUNCATE {', '.join(PROJECTION_TABLES)}")
            conn.execute("DELETE FROM projection_checkpoints WHERE name = %s", (PROJECTION,))

    # -- one event -----------------------------------------------------------------------------

    def _state_before(self, conn: psycopg.Connection, stream_id: str, version: int) -> TaskState:
        cached = self._states.get(stream_id)
        if cached is not None and cached.version == version - 1:
            return cached
        state = TaskState()
        if version == 1:
            return state
        for (payload,) in conn.execute(
            "SELECT payload FROM events WHERE stream_id = %s AND version < %s ORDER BY version",
            (stream_id, version),
        ):
            state = evolve(state, self._codec.decode(bytes(payload)).payload)
        return state

    def _remember(self, stream_id: str, state: TaskState) -> None:
        self._states[stream_id] = state
        self._states.move_to_end(stream_id)
        if len(self._states) > self._cache_size:
            self._states.popitem(last=False)

    def _project_batch(self, conn: psycopg.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Fold the batch per stream, then write each row once (its final state)."""
        rows_of: dict[str, _StreamRows] = {}
        audit: list[tuple[Any, ...]] = []
        for position, stream_id, version, payload, _tx in rows:
            envelope = self._codec.decode(bytes(payload))
            event = envelope.payload
            stream = rows_of.get(stream_id)
            if stream is None:
                stream = rows_of[stream_id] = _StreamRows(
                    self._state_before(conn, stream_id, version))
            stream.apply(event, _ts(envelope.occurred_at_ms))
            audit.append((position, stream_id, version, type(event).__name__, step_of(event),
                          describe(event), _ts(envelope.occurred_at_ms)))
        with conn.cursor() as cursor:
            cursor.executemany(_UPSERT_TASK, [r.task_row(sid) for sid, r in rows_of.items()])
            cursor.executemany(_UPSERT_STEP, [row for sid, r in rows_of.items()
                                              for row in r.step_rows(sid)])
            conditions = [row for sid, r in rows_of.items() for row in r.condition_rows(sid)]
            if conditions:
                cursor.executemany(_UPSERT_CONDITION, conditions)
            cursor.executemany(_INSERT_AUDIT, audit)
        for stream_id, stream in rows_of.items():
            self._remember(stream_id, stream.state)


_UPSERT_TASK = (
    "INSERT INTO task_status (task_id, task_type, status, version, request_json,"
    " response_json, callback_url, idempotency_key, end_reason, submitted_at, updated_at,"
    " failed_step, error_trace_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (task_id) DO UPDATE SET status = EXCLUDED.status,"
    " version = EXCLUDED.version, response_json = EXCLUDED.response_json,"
    " end_reason = EXCLUDED.end_reason, updated_at = EXCLUDED.updated_at,"
    " idempotency_key = COALESCE(task_status.idempotency_key, EXCLUDED.idempotency_key),"
    " failed_step = COALESCE(EXCLUDED.failed_step, task_status.failed_step),"
    " error_trace_id = COALESCE(EXCLUDED.error_trace_id, task_status.error_trace_id)"
)
_UPSERT_STEP = (
    "INSERT INTO step_records (task_id, step, status, attempt, compensation_attempt,"
    " data_json, error_type, error_message, completion_rank, updated_at, trace_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (task_id, step) DO UPDATE SET status = EXCLUDED.status,"
    " attempt = EXCLUDED.attempt, compensation_attempt = EXCLUDED.compensation_attempt,"
    " data_json = EXCLUDED.data_json, error_type = EXCLUDED.error_type,"
    " error_message = EXCLUDED.error_message, completion_rank = EXCLUDED.completion_rank,"
    " updated_at = EXCLUDED.updated_at, trace_id = EXCLUDED.trace_id"
)
_UPSERT_CONDITION = (
    "INSERT INTO condition_snapshots (task_id, step, description, function, result,"
    " context_summary, evaluated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (task_id, step) DO UPDATE SET result = EXCLUDED.result,"
    " context_summary = EXCLUDED.context_summary, evaluated_at = EXCLUDED.evaluated_at"
)
_INSERT_AUDIT = (
    "INSERT INTO audit_entries (position, task_id, version, event_type, step, summary,"
    " occurred_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


class _StreamRows:
    """One stream's part of a batch: its state as it evolves, and what its rows will say."""

    def __init__(self, state: TaskState) -> None:
        self.state = state
        self.updated_at: datetime | None = None
        self.idempotency_key: str | None = None
        self.compensation_failure: ev.TaskCompensationFailed | None = None
        self.steps_updated_at: dict[str, datetime] = {}
        self.conditions: dict[str, ev.ConditionEvaluated] = {}

    def apply(self, event: ev.TaskEvent, at: datetime) -> None:
        self.state = evolve(self.state, event)
        self.updated_at = at
        if isinstance(event, ev.TaskSubmitted):
            self.idempotency_key = event.idempotency_key
        elif isinstance(event, ev.TaskCompensationFailed):
            self.compensation_failure = event
        elif isinstance(event, ev.ConditionEvaluated):
            self.conditions[event.step] = event
        step = step_of(event)
        if step is not None:
            self.steps_updated_at[step] = at

    def task_row(self, stream_id: str) -> tuple[Any, ...]:
        state, failure = self.state, self.compensation_failure
        return (stream_id, state.task_type, state.status.value, state.version,
                state.request_json, state.response_json, state.callback_url,
                self.idempotency_key, state.end_reason, _ts(state.submitted_at_ms),
                self.updated_at, failure.step if failure else None,
                failure.trace_id if failure else None)

    def step_rows(self, stream_id: str) -> list[tuple[Any, ...]]:
        rows = []
        for step, at in self.steps_updated_at.items():
            record = self.state.step(step)
            order = self.state.completion_order
            rank = order.index(step) + 1 if step in order else None
            rows.append((stream_id, step, record.status.value, record.attempt,
                         record.compensation_attempt, record.data_json, record.error_type,
                         record.error_message, rank, at, record.trace_id))
        return rows

    def condition_rows(self, stream_id: str) -> list[tuple[Any, ...]]:
        return [(stream_id, e.step, e.description, e.function, e.result, e.context_summary,
                 _ts(e.evaluated_at_ms)) for e in self.conditions.values()]

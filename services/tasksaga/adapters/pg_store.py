"""The Postgres event store: append with expected version, inbox, outbox and timers in one
transaction per processed message."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import Unprocessable
from tasksaga.adapters.wire import Envelope
from tasksaga.core import messages as msg
from tasksaga.core.ports import ConcurrencyConflict, OutboxRecord
from tasksaga.core.shards import DEFAULT_SHARD, ShardMap
from tasksaga.core.state import TaskState, evolve

OUTBOX_CHANNEL = "tasksaga_outbox"
_DATABASE_NOW_MS = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
EVENTS_CHANNEL = "tasksaga_events"

# The port's types, defined with it in the core; importable from here as they always were.
__all__ = ["PRUNABLE", "ConcurrencyConflict", "OutboxRecord", "PostgresEventStore",
           "StoreTransaction", "StreamArchived", "open_pool", "prune_older_than"]


# One stream's rows: the stream id twice, so the planner prunes to its partition at run time.
_ONE_STREAM = ("stream_id = %s AND stream_opened_at ="
               " (SELECT opened_at FROM streams WHERE stream_id = %s)")
# The unique constraints an append that lost a race violates: the stream's opening, or
# (stream, version) and (message id) in the stream's partition (named after the partition).
_STREAM_UNIQUE = ("streams_pkey", "_stream_id_version_stream_opened_at_key",
                  "_message_id_stream_opened_at_key", "events_stream_version",
                  "events_message_id_key")
_EVENT_COLUMNS = "stream_id, stream_opened_at, version, event_type, message_id, payload"
_UNNEST = "unnest(%s::int[], %s::text[], %s::text[], %s::bytea[])"
_APPEND_OPENING = (
    "WITH opened AS (INSERT INTO streams (stream_id, opened_at) VALUES (%s, %s)"
    " RETURNING stream_id, opened_at)"
    f" INSERT INTO events ({_EVENT_COLUMNS}) SELECT opened.*, u.* FROM opened, {_UNNEST} u"
)
_APPEND = (
    f"INSERT INTO events ({_EVENT_COLUMNS}) SELECT s.stream_id, s.opened_at, u.*"
    f" FROM {_UNNEST} u, streams s WHERE s.stream_id = %s"
)


class StreamArchived(Unprocessable):
    """A message for a task whose stream was archived: it goes to the dead-letter topic with
    this reason (the retention age is far beyond any redelivery, so this is a stray)."""


class StoreTransaction:
    def __init__(self, conn: psycopg.Connection, codec: AvroCodec,
                 shards: ShardMap | None = None, shard: str = DEFAULT_SHARD) -> None:
        self._conn = conn
        self._codec = codec
        self._shards = shards if shards is not None else ShardMap.single()
        self._shard = shard

    def _check(self, task_id: str) -> None:
        """A task of another shard written here would be lost to its own shard (WrongShard)."""
        self._shards.check(self._shard, task_id)

    def claim_message(self, consumer: str, message_id: str) -> bool:
        """Record the message as processed; False when it already was (a redelivery)."""
        cursor = self._conn.execute(
            "INSERT INTO processed_messages (consumer, message_id) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING",
            (consumer, message_id),
        )
        return cursor.rowcount == 1

    def lock_stream(self, task_id: str, wait: bool = True) -> int | None:
        """Serialise writers of one task for this transaction; returns the stream's version
        (None when ``wait`` is False and another transaction holds the lock).

        Without it, a writer that read the stream just before another committed could decide
        on a stale state; a decision with events would then conflict on (stream, version),
        but one without events (a result it wrongly thought stale) would be lost.
        """
        self._check(task_id)
        function = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        locked = self._conn.execute(
            f"SELECT {function}(hashtextextended(%s, 0))::text", (task_id,)
        ).fetchone()
        assert locked is not None
        if locked[0] == "false":
            return None
        # A separate statement, after the lock is held: under READ COMMITTED a statement sees
        # the snapshot taken when it started, so a version read in the statement that waited
        # for the lock would miss what the previous holder committed while we waited.
        row = self._conn.execute(
            f"SELECT coalesce(max(version), 0), max(version) IS NULL AND EXISTS"
            f" (SELECT 1 FROM archived_tasks WHERE task_id = %s) FROM events WHERE {_ONE_STREAM}",
            (task_id, task_id, task_id),
        ).fetchone()
        assert row is not None
        if row[1]:
            raise StreamArchived(f"task {task_id} is archived (its events left the log after "
                                 "the retention age); a message for it can no longer be applied")
        return int(row[0])

    def load_events(self, task_id: str) -> list[Envelope]:
        self._check(task_id)
        rows = self._conn.execute(
            f"SELECT payload FROM events WHERE {_ONE_STREAM} ORDER BY version",
            (task_id, task_id),
        ).fetchall()
        return [self._codec.decode(bytes(row[0])) for row in rows]

    def load_state(self, task_id: str) -> TaskState:
        state = TaskState()
        for envelope in self.load_events(task_id):
            state = evolve(state, envelope.payload)
        return state

    def append(self, task_id: str, expected_version: int, envelopes: Sequence[Envelope]) -> None:
        self._check(task_id)
        rows = []
        for offset, envelope in enumerate(envelopes, start=1):
            if envelope.version != expected_version + offset:
                raise ValueError("event versions must follow the expected version without gaps")
            rows.append((
                envelope.version, type(envelope.payload).__name__,
                envelope.message_id, self._codec.encode(envelope),
            ))
        if not rows:
            return
        versions, types, message_ids, payloads = (
            list(column) for column in zip(*rows, strict=True))
        columns = (versions, types, message_ids, payloads)
        try:
            # One statement for the whole append: the projection trigger (008) then queues
            # the stream once, not once per event. Its events go to the partition of the time
            # the stream was opened (018): fixed in `streams` by version 1, copied after.
            if expected_version == 0:
                opened_at = datetime.fromtimestamp(envelopes[0].occurred_at_ms / 1000, UTC)
                inserted = self._conn.execute(_APPEND_OPENING, (task_id, opened_at, *columns))
            else:
                inserted = self._conn.execute(_APPEND, (*columns, task_id))
        except errors.UniqueViolation as error:
            if (error.diag.constraint_name or "").endswith(_STREAM_UNIQUE):
                raise ConcurrencyConflict(
                    f"stream {task_id} moved past version {expected_version}"
                ) from error
            raise
        if inserted.rowcount != len(rows):
            raise ConcurrencyConflict(f"stream {task_id} has no version {expected_version} to "
                                      "append after: it was never opened")
        self._conn.execute(f"NOTIFY {EVENTS_CHANNEL}")

    def enqueue(self, records: Sequence[OutboxRecord]) -> None:
        if not records:
            return
        with self._conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO outbox (topic, key, value, headers) VALUES (%s, %s, %s, %s)",
                [
                    (r.topic, r.key, r.value,
                     json.dumps([[k, v.decode("latin-1")] for k, v in r.headers]))
                    for r in records
                ],
            )
        self._conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")

    def schedule(self, task_type: str, timers: Sequence[msg.ScheduleTimer]) -> None:
        if not timers:
            return
        for scheduled in timers:
            self._check(scheduled.timer.task_id)
        with self._conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO timers (task_id, kind, step, attempt, fire_at_ms, task_type)"
                " VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (task_id, kind, step, attempt)"
                " DO UPDATE SET fire_at_ms = EXCLUDED.fire_at_ms",
                [
                    (t.timer.task_id, t.timer.kind.value, t.timer.step, t.timer.attempt,
                     t.fire_at_ms, task_type)
                    for t in timers
                ],
            )

    def postpone_timer(self, timer: msg.TimerFired, fire_at_ms: int) -> None:
        self._check(timer.task_id)
        self._conn.execute(
            "UPDATE timers SET fire_at_ms = %s"
            " WHERE task_id = %s AND kind = %s AND step = %s AND attempt = %s",
            (fire_at_ms, timer.task_id, timer.kind.value, timer.step, timer.attempt),
        )

    def delete_timer(self, timer: msg.TimerFired) -> None:
        self._check(timer.task_id)
        self._conn.execute(
            "DELETE FROM timers WHERE task_id = %s AND kind = %s AND step = %s AND attempt = %s",
            (timer.task_id, timer.kind.value, timer.step, timer.attempt),
        )

    def database_now_ms(self) -> int:
        """The database server's clock: the one clock every orchestrator's timers use."""
        row = self._conn.execute(f"SELECT {_DATABASE_NOW_MS}").fetchone()
        assert row is not None
        return int(row[0])

    def claim_due_timers(
        self, now_ms: int, limit: int, task_types: Sequence[str]
    ) -> list[msg.TimerFired]:
        """Due timers of these task types, locked by this transaction; other orchestrators
        skip them."""
        rows = self._conn.execute(
            "SELECT task_id, kind, step, attempt FROM timers"
            " WHERE fire_at_ms <= %s AND task_type = ANY(%s)"
            " ORDER BY fire_at_ms LIMIT %s FOR UPDATE SKIP LOCKED",
            (now_ms, list(task_types), limit),
        ).fetchall()
        return [msg.TimerFired(r[0], msg.TimerKind(r[1]), r[2], r[3]) for r in rows]

    def record_progress(
        self, task_id: str, step: str, attempt: int, progress: float | None, message: str | None
    ) -> None:
        self._check(task_id)
        self._conn.execute(
            "INSERT INTO step_progress (task_id, step, attempt, progress, message)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (task_id, step) DO UPDATE SET"
            " attempt = EXCLUDED.attempt, progress = EXCLUDED.progress,"
            " message = EXCLUDED.message, reported_at = now()",
            (task_id, step, attempt, progress, message),
        )


class PostgresEventStore:
    """One database holding every task (a single shard; adapters/pg_shards.py spreads the
    store over several)."""

    def __init__(self, pool: ConnectionPool, codec: AvroCodec) -> None:
        self._pool = pool
        self._codec = codec

    def shard_names(self) -> Sequence[str]:
        return (DEFAULT_SHARD,)

    def shard_of(self, task_id: str) -> str:
        return DEFAULT_SHARD

    @contextmanager
    def transaction(self, shard: str | None = None) -> Iterator[StoreTransaction]:
        if shard not in (None, DEFAULT_SHARD):
            raise ValueError(f"no shard {shard!r}: this store is the one shard {DEFAULT_SHARD}")
        with self._pool.connection() as conn, conn.transaction():
            yield StoreTransaction(conn, self._codec)

    def next_timer_delay_ms(self, task_types: Sequence[str]) -> int | None:
        """Milliseconds until the next timer of these task types is due (by the database's
        clock, the one timers are scheduled and fired with), None when there is none."""
        with self._pool.connection() as conn:
            row = conn.execute(f"SELECT min(fire_at_ms) - {_DATABASE_NOW_MS} FROM timers"
                               " WHERE task_type = ANY(%s)", (list(task_types),)).fetchone()
        return None if row is None or row[0] is None else int(row[0])


# Tables pruned by age, and the column their age is read from (indexes in 008).
PRUNABLE = {"processed_messages": "processed_at", "webhook_deliveries": "attempted_at"}


def prune_older_than(
    pool: ConnectionPool, table: str, retention_s: float, batch_size: int = 5000,
) -> int:
    """Delete the rows of ``table`` older than ``retention_s``, in short transactions of at
    most ``batch_size`` rows (no long lock, no long transaction); returns how many."""
    if table not in PRUNABLE:
        raise ValueError(f"{table!r} is not prunable; prunable tables: {', '.join(PRUNABLE)}")
    if retention_s <= 0:
        raise ValueError(f"the retention of {table} must be positive, got {retention_s} s")
    column = PRUNABLE[table]
    total = 0
    while True:
        with pool.connection() as conn, conn.transaction():
            deleted = conn.execute(
                f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table}"
                f" WHERE {column} < now() - make_interval(secs => %s) LIMIT %s))",
                (retention_s, batch_size),
            ).rowcount
        total += deleted
        if deleted < batch_size:
            return total


def open_pool(database_url: str, max_size: int = 8, name: str = "tasksaga") -> ConnectionPool:
    pool = ConnectionPool(
        database_url, min_size=1, max_size=max_size, open=False, name=name,
        kwargs={"application_name": name},
    )
    pool.open(wait=True, timeout=30)
    return pool

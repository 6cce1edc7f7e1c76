"""One event-store transaction on Postgres, its writes set-based and sent behind.

Appends, outbox records, timers and progress are kept in memory as they are decided and
written at commit (or before the next read that could see them) in one statement per table,
all in one pipeline: one round trip for a whole batch of messages rather than one per
statement per message. Claims and stream locks of a batch are one pipelined round trip too.
Nothing changes for the reader: a load sees this transaction's own appends, a conflict still
aborts the whole transaction (raised at the latest when it commits), and what commits is
exactly what was decided, in the order it was decided.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import errors

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import Unprocessable
from tasksaga.adapters.wire import Envelope
from tasksaga.core import messages as msg
from tasksaga.core.ports import ConcurrencyConflict, OutboxRecord
from tasksaga.core.shards import DEFAULT_SHARD, ShardMap
from tasksaga.core.state import TaskState, fold

# Notified by tasksaga_write_batch (023, 024), which names them too.
OUTBOX_CHANNEL = "tasksaga_outbox"
EVENTS_CHANNEL = "tasksaga_events"
DATABASE_NOW_MS = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

# One stream's rows: the stream id twice, so the planner prunes to its partition at run time.
_ONE_STREAM = ("stream_id = %s AND stream_opened_at ="
               " (SELECT opened_at FROM streams WHERE stream_id = %s)")
# The unique constraints an append that lost a race violates: the stream's opening, or
# (stream, version) and (message id) in the stream's partition (named after the partition).
_STREAM_UNIQUE = ("streams_pkey", "_stream_id_version_stream_opened_at_key",
                  "_message_id_stream_opened_at_key", "events_stream_version",
                  "events_message_id_key")
# The batch's writes in one call of a database function (023, 024): one jsonb document.
_WRITE_BATCH = "SELECT appended, outbox_ids FROM tasksaga_write_batch(%s::jsonb)"
_BEGIN_BATCH = "SELECT * FROM tasksaga_begin_batch(%s::text[], %s, %s::text[])"
_CLAIM = ("INSERT INTO processed_messages (consumer, message_id)"
          " SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING RETURNING message_id")
# A stream's version, for a lock already held (try-locks; batches read them in
# tasksaga_begin_batch, 022, after taking the locks).
_VERSIONS = (
    "SELECT u.t, coalesce(v.version, 0), v.version IS NULL AND EXISTS"
    " (SELECT 1 FROM archived_tasks a WHERE a.task_id = u.t)"
    " FROM unnest(%s::text[]) u(t) LEFT JOIN streams s ON s.stream_id = u.t"
    " LEFT JOIN LATERAL (SELECT max(e.version) AS version FROM events e"
    "  WHERE e.stream_id = u.t AND e.stream_opened_at = s.opened_at) v ON true"
)

TimerKey = tuple[str, str, str, int]  # (task id, kind, step, attempt)


class StreamArchived(Unprocessable):
    """A message for a task whose stream was archived: it goes to the dead-letter topic with
    this reason (the retention age is far beyond any redelivery, so this is a stray)."""


@dataclass(frozen=True)
class _EventRow:
    task_id: str
    version: int
    event_type: str
    message_id: str
    payload: bytes
    opened_at: datetime | None  # set on the append that opens the stream


class StoreTransaction:
    def __init__(self, conn: psycopg.Connection, codec: AvroCodec,
                 shards: ShardMap | None = None, shard: str = DEFAULT_SHARD,
                 notify_outbox: bool = True) -> None:
        self._conn = conn
        self._codec = codec
        self._shards = shards if shards is not None else ShardMap.single()
        self._shard = shard
        self._events: list[_EventRow] = []
        self._outbox: list[OutboxRecord] = []
        # The last word on each timer: (fire at, task type) to schedule, None to delete.
        self._timers: dict[TimerKey, tuple[int, str] | None] = {}
        self._progress: dict[tuple[str, str], tuple[int, float | None, str | None]] = {}
        # The outbox records written, with their row ids (in enqueue order): published at
        # once after the commit by an OutboxPublisher, if the caller has one.
        self.enqueued: list[tuple[int, OutboxRecord]] = []
        self._notify_outbox = notify_outbox
        self._clock_reading: int | None = None
        self._published: list[int] = []  # outbox rows of earlier commits to delete

    def _check(self, task_id: str) -> None:
        """A task of another shard written here would be lost to its own shard (WrongShard)."""
        self._shards.check(self._shard, task_id)

    # -- the inbox and the locks -----------------------------------------------------------------

    def claim_message(self, consumer: str, message_id: str) -> bool:
        """Record the message as processed; False when it already was (a redelivery)."""
        return message_id in self.claim_messages(consumer, [message_id])

    def claim_messages(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        """Claim many in one statement; the ids claimed now (not processed before)."""
        if not message_ids:
            return set()
        rows = self._conn.execute(_CLAIM, (consumer, list(dict.fromkeys(message_ids))))
        return {row[0] for row in rows.fetchall()}

    def lock_stream(self, task_id: str, wait: bool = True) -> int | None:
        """Serialise writers of one task for this transaction; returns the stream's version
        (None when ``wait`` is False and another transaction holds the lock).

        Without it, a writer that read the stream just before another committed could decide
        on a stale state; a decision with events would then conflict on (stream, version),
        but one without events (a result it wrongly thought stale) would be lost.
        """
        if wait:
            return self.lock_streams([task_id])[task_id]
        self._check(task_id)
        self.flush()
        locked = self._conn.execute(
            "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", (task_id,)).fetchone()
        if not locked or not locked[0]:
            return None
        return self._versions([task_id])[task_id]

    def lock_streams(self, task_ids: Iterable[str]) -> dict[str, int]:
        """Lock every stream (in sorted order) and read their versions: one round trip, the
        batch start's without claims (its clock reading rides along, as there)."""
        ids = set(task_ids)
        return self.lock_and_claim(ids, "", [])[0] if ids else {}

    def lock_and_claim(self, task_ids: Iterable[str], consumer: str,
                       message_ids: Sequence[str]) -> tuple[dict[str, int], set[str]]:
        """Lock, read versions, claim and read the clock in one call of a database function
        (022_batch_start.sql): the claims and the clock reading come after the locks are
        held, as the separate calls would; the reading answers this transaction's next
        ``database_now_ms``."""
        ordered = sorted(set(task_ids))
        for task_id in ordered:
            self._check(task_id)
        self.flush()
        row = self._conn.execute(_BEGIN_BATCH, (ordered, consumer,
                                                list(dict.fromkeys(message_ids)))).fetchone()
        assert row is not None
        stream_ids, versions, archived, claimed, now_ms = row
        self._clock_reading = int(now_ms)
        return (self._read_versions(list(zip(stream_ids, versions, archived, strict=True))),
                set(claimed))

    def _versions(self, task_ids: list[str]) -> dict[str, int]:
        return self._read_versions(self._conn.execute(_VERSIONS, (task_ids,)).fetchall())

    @staticmethod
    def _read_versions(rows: list[tuple[str, int, bool]]) -> dict[str, int]:
        found: dict[str, int] = {}
        for task_id, version, archived in rows:
            if archived:
                raise StreamArchived(
                    f"task {task_id} is archived (its events left the log after the retention "
                    "age); a message for it can no longer be applied")
            found[task_id] = int(version)
        return found

    # -- reads -----------------------------------------------------------------------------------

    def load_events(self, task_id: str) -> list[Envelope]:
        self._check(task_id)
        self.flush()
        rows = self._conn.execute(
            f"SELECT payload FROM events WHERE {_ONE_STREAM} ORDER BY version",
            (task_id, task_id),
        ).fetchall()
        return [self._codec.decode(bytes(row[0])) for row in rows]

    def load_state(self, task_id: str) -> TaskState:
        return fold([envelope.payload for envelope in self.load_events(task_id)])

    def database_now_ms(self) -> int:
        """The database server's clock: the one clock every orchestrator's timers use."""
        if self._clock_reading is not None:  # read by lock_and_claim, moments ago
            reading, self._clock_reading = self._clock_reading, None
            return reading
        row = self._conn.execute(f"SELECT {DATABASE_NOW_MS}").fetchone()
        assert row is not None
        return int(row[0])

    def claim_due_timers(
        self, now_ms: int, limit: int, task_types: Sequence[str]
    ) -> list[msg.TimerFired]:
        """Due timers of these task types, locked by this transaction; other orchestrators
        skip them."""
        self.flush()
        rows = self._conn.execute(
            "SELECT task_id, kind, step, attempt FROM timers"
            " WHERE fire_at_ms <= %s AND task_type = ANY(%s)"
            " ORDER BY fire_at_ms LIMIT %s FOR UPDATE SKIP LOCKED",
            (now_ms, list(task_types), limit),
        ).fetchall()
        return [msg.TimerFired(r[0], msg.TimerKind(r[1]), r[2], r[3]) for r in rows]

    # -- writes, kept until flush ----------------------------------------------------------------

    def append(self, task_id: str, expected_version: int, envelopes: Sequence[Envelope],
               encoded: Sequence[bytes] | None = None) -> None:
        self._check(task_id)
        if encoded is not None and len(encoded) != len(envelopes):
            raise ValueError("append got a different number of encoded values than envelopes")
        for offset, envelope in enumerate(envelopes, start=1):
            if envelope.version != expected_version + offset:
                raise ValueError("event versions must follow the expected version without gaps")
        # Events go to the partition of the time the stream was opened (018): fixed in
        # `streams` by version 1, copied to every later event.
        opened_at = (datetime.fromtimestamp(envelopes[0].occurred_at_ms / 1000, UTC)
                     if envelopes and expected_version == 0 else None)
        for index, envelope in enumerate(envelopes):
            self._events.append(_EventRow(
                task_id, envelope.version, type(envelope.payload).__name__, envelope.message_id,
                self._codec.encode(envelope) if encoded is None else encoded[index],
                opened_at if index == 0 else None))

    def delete_published(self, row_ids: Sequence[int]) -> None:
        self._published.extend(row_ids)

    def enqueue(self, records: Sequence[OutboxRecord]) -> None:
        self._outbox.extend(records)

    def schedule(self, task_type: str, timers: Sequence[msg.ScheduleTimer]) -> None:
        for scheduled in timers:
            self._check(scheduled.timer.task_id)
        for scheduled in timers:
            self._timers[_key(scheduled.timer)] = (scheduled.fire_at_ms, task_type)

    def delete_timer(self, timer: msg.TimerFired) -> None:
        self._check(timer.task_id)
        self._timers[_key(timer)] = None

    def postpone_timer(self, timer: msg.TimerFired, fire_at_ms: int) -> None:
        self._check(timer.task_id)
        self.flush()  # moves the row only if it exists: not a schedule
        self._conn.execute(
            "UPDATE timers SET fire_at_ms = %s"
            " WHERE task_id = %s AND kind = %s AND step = %s AND attempt = %s",
            (fire_at_ms, timer.task_id, timer.kind.value, timer.step, timer.attempt),
        )

    def record_progress(
        self, task_id: str, step: str, attempt: int, progress: float | None, message: str | None
    ) -> None:
        self._check(task_id)
        self._progress[(task_id, step)] = (attempt, progress, message)

    def flush(self) -> None:
        """Write what was kept in one call (one statement per table, run by the database). A
        stream that moved on meanwhile raises ConcurrencyConflict (the transaction is then
        aborted)."""
        if not (self._events or self._outbox or self._timers or self._progress
                or self._published):
            return
        events, outbox, timers, progress = self._events, self._outbox, self._timers, \
            self._progress
        self._events, self._outbox, self._timers, self._progress = [], [], {}, {}
        published, self._published = self._published, []
        try:
            row = self._conn.execute(_WRITE_BATCH, (json.dumps(_batch_document(
                events, outbox, timers, progress, published, self._notify_outbox)),)
            ).fetchone()
        except errors.UniqueViolation as error:
            if (error.diag.constraint_name or "").endswith(_STREAM_UNIQUE):
                streams = sorted({row.task_id for row in events})
                raise ConcurrencyConflict(
                    f"a stream moved past the version it was decided at: {', '.join(streams)}"
                ) from error
            raise
        assert row is not None
        appended, ids = row
        if appended != len(events):
            missing = sorted({r.task_id for r in events if r.opened_at is None})
            raise ConcurrencyConflict(f"no stream to append to (never opened): "
                                      f"{', '.join(missing)}")
        self.enqueued.extend(zip(ids, outbox, strict=True))


def _batch_document(
    events: list[_EventRow], outbox: list[OutboxRecord],
    timers: dict[TimerKey, tuple[int, str] | None],
    progress: dict[tuple[str, str], tuple[int, float | None, str | None]],
    published: list[int], notify_outbox: bool,
) -> dict[str, object]:
    """What tasksaga_write_batch (024) reads: a list of rows per table, absent when empty;
    byte strings base64-encoded."""
    found: dict[str, object] = {}
    opened = [[r.task_id, r.opened_at.isoformat()] for r in events if r.opened_at is not None]
    if opened:
        found["opened"] = opened
    if events:
        found["events"] = [[r.task_id, r.version, r.event_type, r.message_id, _b64(r.payload)]
                           for r in events]
    if outbox:
        found["outbox"] = [[r.topic, None if r.key is None else _b64(r.key), _b64(r.value),
                            [[k, v.decode("latin-1")] for k, v in r.headers]] for r in outbox]
        found["notify_outbox"] = notify_outbox
    scheduled = [[*key, value[0], value[1]] for key, value in timers.items()
                 if value is not None]
    if scheduled:
        found["timers"] = scheduled
    gone = [list(key) for key, value in timers.items() if value is None]
    if gone:
        found["gone"] = gone
    if progress:
        found["progress"] = [[task, step, *values] for (task, step), values in progress.items()]
    if published:
        found["published"] = published
    return found


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _key(timer: msg.TimerFired) -> TimerKey:
    return (timer.task_id, timer.kind.value, timer.step, timer.attempt)


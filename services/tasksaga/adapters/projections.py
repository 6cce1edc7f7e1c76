"""Projections of the event log: task status, step records, condition snapshots, audit.

Each stream is projected by version. An append also writes a ``projection_queue`` entry in its
own transaction (a trigger, 008): the stream has events up to version N. The projector takes
committed entries, reads each named stream from the version its ``task_status`` row holds, and
deletes the entries it settled, all in one transaction. An entry becomes visible exactly when
its events do, so nothing is skipped, and nothing waits for unrelated transactions: reading
the log in (transaction id, position) order below ``pg_snapshot_xmin`` (the former mechanism)
froze every status for as long as any transaction anywhere in the cluster stayed open.
docs/architecture.md ("Projections") compares this with the alternatives considered.

Rows are derived from the aggregate's own fold (``evolve``), so status rules live in one place,
and timestamps come from the events, so a rebuild produces identical tables.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec, DecodeError
from tasksaga.adapters.projection_rows import StreamRows, timestamp
from tasksaga.adapters.projection_writes import (
    AUDIT,
    CONDITIONS,
    STEPS,
    TABLES,
    TASKS,
    TableRows,
    copy_fresh,
    upsert_all,
)
from tasksaga.core import events as ev
from tasksaga.core.audit import describe, step_of
from tasksaga.core.fan_out_audit import summarised
from tasksaga.core.state import TaskState, fold
from tasksaga.orchestrator.state_cache import StateCache

log = logging.getLogger(__name__)

PROJECTION_TABLES = ("task_status", "step_records", "condition_snapshots", "audit_entries")
_LOCK_KEY = 7_201_502
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
# A rebuild's batches: fewer, larger transactions (its queue holds one entry per stream, each
# for the whole stream); the live projector keeps small ones, so a batch commits quickly.
REBUILD_BATCH = 10_000


@dataclass(frozen=True)
class ProjectionLag:
    """How far the projections are behind the committed log."""

    seconds: float  # age of the oldest committed append not projected yet (0 when caught up)
    events: int  # committed events not projected yet

    def __str__(self) -> str:
        return f"{self.events} events, {self.seconds:.1f} s behind"


_LAG = (
    "SELECT coalesce(extract(epoch FROM clock_timestamp() - min(q.enqueued_at)), 0)::float8,"
    " coalesce(sum(q.version - coalesce(s.version, 0)), 0)::bigint"
    " FROM (SELECT stream_id, max(version) AS version, min(enqueued_at) AS enqueued_at"
    "       FROM projection_queue GROUP BY stream_id) q"
    " LEFT JOIN task_status s ON s.task_id = q.stream_id"
    " WHERE q.version > coalesce(s.version, 0)"
)


def projection_lag(pool: ConnectionPool) -> ProjectionLag:
    """Seconds and events the projections are behind the committed log (for /health,
    metrics and the projector's log line)."""
    with pool.connection() as conn:
        row = conn.execute(_LAG).fetchone()
    assert row is not None
    return ProjectionLag(seconds=max(float(row[0]), 0.0), events=int(row[1]))


@dataclass(frozen=True)
class StreamPartition:
    """One of ``count`` disjoint sets of streams (by a hash of the stream id): a projector
    given one takes only its streams' queue entries, so ``count`` of them can project at once
    (a parallel rebuild, adapters/parallel_rebuild.py)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"partition {self.index} of {self.count}: want 0 <= index < count")


class Projector:
    """Projects the committed log (see the module's docstring).

    Without a ``partition`` each batch tries the projection lock exclusively (one projector at
    a time, whichever process runs it; a batch that finds it held projects nothing). With one
    each batch waits for it shared: the other partitions' projectors run at the same time
    (their streams are disjoint, so no row is written by two), an unpartitioned one, which
    takes any stream's entries, never does.
    """

    def __init__(
        self, pool: ConnectionPool, codec: AvroCodec, cache_bytes: int = DEFAULT_CACHE_BYTES,
        partition: StreamPartition | None = None,
    ) -> None:
        self._pool = pool
        self._codec = codec
        self._partition = partition
        self._states = StateCache(max_bytes=cache_bytes, keep_terminal=True)
        self._poisoned: set[str] = set()  # streams that could not be decoded (logged)

    def catch_up(self, batch_size: int = 2000, *, rebuilding: bool = False) -> int:
        """Project the next batch of committed events; returns how many were projected
        (0: nothing left, or another process is projecting).

        ``rebuilding`` (after ``reset``, as ``tasksaga-replay --rebuild``): the rows of streams
        not projected yet are written with COPY, and the cyclic garbage collector is paused
        for each batch (see ``collector_paused``). The rows are the same either way.
        """
        while True:
            poisoned = len(self._poisoned)
            with collector_paused(rebuilding):
                settled, projected = self._batch(batch_size, rebuilding)
            if projected or not (settled or len(self._poisoned) > poisoned):
                return projected
            # Only entries already projected, or a stream found unreadable: go on with the
            # next entries rather than report "nothing left".

    def _batch(self, batch_size: int, rebuilding: bool) -> tuple[int, int]:
        """One transaction: (queue entries settled, events projected)."""
        with self._pool.connection() as conn, conn.transaction():
            part = self._partition
            if part:  # waits out an unpartitioned batch: 0 projected means nothing is left
                conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (_LOCK_KEY,))
            else:
                locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)",
                                      (_LOCK_KEY,)).fetchone()
                if not locked or not locked[0]:
                    return 0, 0  # another process is projecting
            # Without a partition: (count 1, index 0), which holds every stream.
            of = (part.count, part.index) if part else (1, 0)
            poisoned = list(self._poisoned)
            if rebuilding:
                queued = conn.execute(_QUEUED_FOR_REBUILD,
                                      (poisoned, *of, batch_size, batch_size)).fetchall()
            else:
                queued = conn.execute(_QUEUED, (poisoned, *of, batch_size)).fetchall()
            if not queued:
                return 0, 0
            queued_version: dict[str, int] = {}  # in queue order: the oldest first
            for _entry, stream_id, version in queued:
                queued_version[stream_id] = max(queued_version.get(stream_id, 0), version)
            projected_version = dict.fromkeys(queued_version, 0)
            projected_version.update(conn.execute(
                "SELECT task_id, version FROM task_status WHERE task_id = ANY(%b::text[])",
                (list(queued_version),)).fetchall())
            streams = sorted(_enough_streams(queued_version, projected_version, batch_size))
            after = [projected_version[s] for s in streams]
            # Binary results: the payloads arrive as they are stored, not hex-encoded.
            rows = conn.cursor(binary=True).execute(
                _STREAMS_AFTER, (streams, after, streams, after, batch_size),
            ).fetchall() if streams else []
            try:
                if rows:
                    self._project_batch(conn, rows, projected_version, rebuilding)
            except Exception:
                self._states.clear()  # the transaction rolls back: cached states are ahead
                raise
            for _position, stream_id, version, _payload in rows:
                if stream_id not in self._poisoned:
                    projected_version[stream_id] = version
            # An entry is settled once its stream is projected up to its version; the rest
            # (a stream cut by the batch limit) stay for the next batch.
            settled = [entry_id for entry_id, stream_id, version in queued
                       if version <= projected_version[stream_id]
                       and stream_id not in self._poisoned]
            conn.execute("DELETE FROM projection_queue WHERE id = ANY(%s)", (settled,))
            return len(settled), len(rows)

    def catch_up_fully(self, batch_size: int = 2000, *, rebuilding: bool = False) -> int:
        total = 0
        while count := self.catch_up(batch_size, rebuilding=rebuilding):
            total += count
        return total

    def lag(self) -> ProjectionLag:
        return projection_lag(self._pool)

    def reset(self) -> None:
        """Empty the projection tables and queue every stream again (the log is untouched)."""
        self._states.clear()
        with self._pool.connection() as conn, conn.transaction():
            # Wait for a running batch to finish, and keep others out until the queue is full.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(f"TRUNCATE {', '.join(PROJECTION_TABLES)}, projection_queue")
            conn.execute("INSERT INTO projection_queue (stream_id, version)"
                         " SELECT stream_id, max(version) FROM (SELECT stream_id, version"
                         " FROM events UNION ALL SELECT stream_id, version"
                         " FROM restored_events) log GROUP BY stream_id")

    # -- one event -----------------------------------------------------------------------------

    def _state_before(self, conn: psycopg.Connection, stream_id: str, version: int) -> TaskState:
        cached = self._states.get(stream_id)
        if cached is not None and cached.version == version - 1:
            return cached
        if version == 1:
            return TaskState()
        events: list[ev.TaskEvent] = []
        for payload, _version in conn.execute(
            "SELECT payload, version FROM events WHERE stream_id = %s AND version < %s"
            " UNION ALL SELECT payload, version FROM restored_events"
            " WHERE stream_id = %s AND version < %s ORDER BY version",
            (stream_id, version, stream_id, version),
        ).fetchall():
            events.append(self._codec.decode(bytes(payload)).payload)
        return fold(events)

    def _project_batch(
        self, conn: psycopg.Connection, rows: list[tuple[Any, ...]], projected: dict[str, int],
        rebuilding: bool,
    ) -> None:
        """Fold the batch per stream, then write each row once (its final state): upserted,
        or, rebuilding, copied for the streams that have no rows yet."""
        rows_of: dict[str, StreamRows] = {}
        audit: dict[str, list[tuple[Any, ...]]] = {}
        for position, stream_id, version, payload in rows:
            if stream_id in self._poisoned:
                continue
            try:
                envelope = self._codec.decode(bytes(payload))
                stream = rows_of.get(stream_id)
                if stream is None:
                    if version != projected[stream_id] + 1:
                        raise DecodeError(f"a gap after version {projected[stream_id]}")
                    stream = rows_of[stream_id] = StreamRows(
                        self._state_before(conn, stream_id, version), self._codec.cipher)
            except DecodeError as error:
                # One stream that cannot be read (a key missing from the ring, a corrupt
                # event) must not halt every other status: it stays queued, counted as lag,
                # and is tried again when the process restarts.
                log.error("stream %s cannot be projected from version %d, skipped until"
                          " restart: %s", stream_id, version, error)
                self._poisoned.add(stream_id)
                rows_of.pop(stream_id, None)
                audit.pop(stream_id, None)
                continue
            event = envelope.payload
            at = timestamp(envelope.occurred_at_ms)
            if not summarised(event):  # a routine fan-out instance event: the group's lines
                # summarise it. Described against the state before the event, so before it.
                audit.setdefault(stream_id, []).append((
                    position, stream_id, version, type(event).__name__, step_of(event),
                    describe(event, stream.state, envelope.occurred_at_ms), at))
            stream.apply(event, at)
        # A stream with no task_status row has no rows in any projection table: the four are
        # written together, in this transaction, under the projector's lock.
        upserted: TableRows = {table: [] for table in TABLES}
        copied: TableRows = {table: [] for table in TABLES}
        for sid, stream in rows_of.items():
            out = copied if rebuilding and projected[sid] == 0 else upserted
            out[TASKS].append(stream.task_row(sid))
            out[STEPS].extend(stream.step_rows(sid))
            out[CONDITIONS].extend(stream.condition_rows(sid))
            out[AUDIT].extend(audit.get(sid, ()))
        with conn.cursor() as cursor:
            upsert_all(cursor, upserted)
            copy_fresh(cursor, copied)
        self._states.put_all({sid: stream.fold.result() for sid, stream in rows_of.items()})


@contextmanager
def collector_paused(paused: bool) -> Iterator[None]:
    """The cyclic garbage collector off for one rebuild batch (``paused``).

    A batch allocates ~100 objects per event (decoded records, states, rows), none in a
    reference cycle (frozen dataclasses, tuples, dicts, lists), so reference counting frees
    them; each full collection meanwhile walked every object the process keeps, the state
    cache's states among them: ~13 % of a rebuild. Re-enabled after the batch, so anything
    cyclic is still collected; the live projector never pauses it (other threads allocate).
    """
    if not paused or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _enough_streams(queued: dict[str, int], projected: dict[str, int], events: int) -> list[str]:
    """The streams (oldest entry first) whose queued events fill a batch of ``events``.

    Reading every queued stream and cutting the sorted result at the limit read each stream
    again for each batch it was cut from: after a reset (one entry per stream, each for its
    whole stream) a batch of 2,000 events read the events of 2,000 streams, ~20 times more.
    The queued version is what the entry promises; the events query keeps its own limit.
    """
    chosen: list[str] = []
    budget = 0
    for stream_id, version in queued.items():
        todo = version - projected[stream_id]
        if todo <= 0:
            continue  # already projected: its entries are settled without reading it
        if budget >= events:
            break
        chosen.append(stream_id)
        budget += todo
    return chosen


# A queue entry's stream in partition (count, index): hashtext is an int4, made non-negative.
_IN_PARTITION = "mod(hashtext(stream_id)::int8 + 2147483648, %s) = %s"
_QUEUED = ("SELECT id, stream_id, version FROM projection_queue"
           f" WHERE NOT (stream_id = ANY(%s)) AND {_IN_PARTITION} ORDER BY id LIMIT %s")
# A rebuild's queue holds one entry per stream, for all of it: the entries whose streams fill
# the batch are about its average stream length fewer than ``batch_size``, and reading (and
# looking up the task_status of) all ``batch_size`` of them was ~10 % of a rebuild. The cut
# counts each entry's whole version (its stream not projected yet: exact; otherwise more than
# is left), so it never takes more than ``_enough_streams`` would; the first entry is always in.
_QUEUED_FOR_REBUILD = (
    "SELECT id, stream_id, version FROM (SELECT id, stream_id, version,"
    " sum(version) OVER (ORDER BY id) AS upto FROM (SELECT id, stream_id, version"
    f" FROM projection_queue WHERE NOT (stream_id = ANY(%s)) AND {_IN_PARTITION}"
    " ORDER BY id LIMIT %s) q) w"
    " WHERE upto - version < %s ORDER BY id"
)


# The events of each named stream after a version: from the hot log and, for a task brought
# back from its archive, from restored_events (each side on its own index).
_STREAMS_AFTER = (
    "SELECT * FROM (SELECT e.position, e.stream_id, e.version, e.payload FROM events e"
    " JOIN unnest(%b::text[], %b::int[]) AS q(stream_id, after)"
    " ON e.stream_id = q.stream_id AND e.version > q.after"
    " UNION ALL SELECT r.position, r.stream_id, r.version, r.payload FROM restored_events r"
    " JOIN unnest(%b::text[], %b::int[]) AS q(stream_id, after)"
    " ON r.stream_id = q.stream_id AND r.version > q.after) log"
    " ORDER BY stream_id, version LIMIT %s"
)

"""Retention: archive old event partitions to object storage, drop them, restore on request.

One pass (``Archiver.run``) looks at every closed partition of the log (no stream can be opened
in it any more). A partition whose tasks all ended (Completed, Failed or Cancelled; the
projection caught up with their streams) more than the retention age ago is archived:

1. read its rows (one short read-only transaction) into a local container file;
2. upload the file, its checksum and its manifest (no transaction open);
3. read the object back and check it against the manifest (SHA-256, counts, versions);
4. one short transaction: detach the partition, check it still holds exactly the archived
   rows, record the archive and its tasks, drop the tasks' audit rows, drop the partition.

A partition with a task still running (or parked for an operator) stays, and the report says
which. Rows never leave the log any other way: UPDATE, DELETE and TRUNCATE stay refused.

``restore(task_id)`` reads the task's archive back (checked against its manifest again), puts
its events in ``restored_events`` and has the projector project them, so status and audit
read as before. docs/operations.md, "Retention and archival".
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from io import BytesIO

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from tasksaga.adapters import archive_format as fmt
from tasksaga.adapters.partitions import (
    EventPartition,
    database_now,
    drop_partition,
    list_partitions,
)
from tasksaga.adapters.pg_store import EVENTS_CHANNEL
from tasksaga.adapters.projections import PROJECTION_TABLES
from tasksaga.core.ports import ObjectStore

log = logging.getLogger(__name__)

#: Statuses an archived task may have: ended, and nothing an operator could still do with it
#: (CompensationFailed and NeedsAttention wait for a retry, so they keep their partition).
ARCHIVABLE_STATUSES = ("Completed", "Failed", "Cancelled")
# One archiver per log (per schema: a database may hold several logs).
_LOCK = "7201504, hashtext(current_schema())"


@dataclass(frozen=True)
class ArchivedPartition:
    partition: str
    location: str
    tasks: int
    events: int
    size_bytes: int
    seconds: float  # from the first read to the drop


@dataclass
class ArchiveReport:
    archived: list[ArchivedPartition] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # partition -> why it stays
    dropped_empty: list[str] = field(default_factory=list)
    busy: bool = False  # another archiver was running: this pass did nothing

    def lines(self) -> list[str]:
        if self.busy:
            return ["another archiver is running; nothing done"]
        out = [f"archived {a.partition}: {a.tasks} tasks, {a.events} events, "
               f"{a.size_bytes} bytes in {a.seconds:.2f} s -> {a.location}"
               for a in self.archived]
        out += [f"dropped empty partition {name}" for name in self.dropped_empty]
        out += [f"kept {name}: {why}" for name, why in self.held.items()]
        return out or ["nothing to archive"]


@dataclass(frozen=True)
class TaskArchive:
    task_id: str
    location: str
    archived_at: datetime
    restored_at: datetime | None


class ArchiveNotFound(LookupError):
    """The task has no archive (it is in the hot log, or unknown)."""


class Archiver:
    def __init__(self, pool: ConnectionPool, objects: ObjectStore, bucket: str,
                 prefix: str = "events", lock_timeout_s: float = 5.0) -> None:
        self._pool = pool
        self._objects = objects
        self.bucket = bucket
        self._prefix = prefix
        self._lock_timeout_ms = int(lock_timeout_s * 1000)

    # -- archive ---------------------------------------------------------------------------

    def run(self, retention: timedelta, only: str | None = None) -> ArchiveReport:
        """One pass over the closed partitions (or only partition ``only``)."""
        if retention < timedelta(0):
            raise ValueError(f"the retention age must not be negative, got {retention}")
        with self._pool.connection() as guard:
            # One archiver at a time: a session lock held on an idle connection (autocommit,
            # so no transaction stays open across the uploads).
            guard.autocommit = True
            try:
                locked = guard.execute(f"SELECT pg_try_advisory_lock({_LOCK})").fetchone()
                if not locked or not locked[0]:
                    return ArchiveReport(busy=True)
                try:
                    return self._pass(retention, only)
                finally:
                    guard.execute(f"SELECT pg_advisory_unlock({_LOCK})")
            finally:
                guard.autocommit = False

    def _pass(self, retention: timedelta, only: str | None) -> ArchiveReport:
        report = ArchiveReport()
        with self._pool.connection() as conn, conn.transaction():
            now = database_now(conn)
            partitions = [p for p in list_partitions(conn)
                          if p.closed(now) and (only is None or p.name == only)]
        if only is not None and not partitions:
            raise ValueError(f"{only} is not a closed partition of the event log")
        for partition in partitions:
            reason = self._reason_to_keep(partition, now - retention)
            if reason == "empty":
                with self._pool.connection() as conn, conn.transaction():
                    drop_partition(conn, partition.name)
                report.dropped_empty.append(partition.name)
            elif reason:
                report.held[partition.name] = reason
                log.info("partition %s kept: %s", partition.name, reason)
            else:
                archived = self.archive_partition(partition)
                report.archived.append(archived)
                log.info("archived %s: %d tasks, %d events -> %s", archived.partition,
                         archived.tasks, archived.events, archived.location)
        return report

    def _reason_to_keep(self, partition: EventPartition, ended_before: datetime) -> str | None:
        """Why the partition must stay (None: it may go; "empty": nothing in it)."""
        query = sql.SQL(
            "SELECT e.stream_id, max(e.version), s.status, s.version, s.updated_at"
            " FROM {} e LEFT JOIN task_status s ON s.task_id = e.stream_id"
            " GROUP BY e.stream_id, s.status, s.version, s.updated_at"
        ).format(sql.Identifier(partition.name))
        with self._pool.connection() as conn, conn.transaction():
            streams = conn.execute(query).fetchall()
        if not streams:
            return "empty"
        running = [r[0] for r in streams if r[2] not in ARCHIVABLE_STATUSES]
        lagging = [r[0] for r in streams if r[2] in ARCHIVABLE_STATUSES and r[3] != r[1]]
        recent = [r[0] for r in streams if r[2] in ARCHIVABLE_STATUSES and r[3] == r[1]
                  and r[4] > ended_before]
        for tasks, what in ((running, "not ended (or waiting for an operator)"),
                            (lagging, "not projected up to their last event yet"),
                            (recent, "ended within the retention age")):
            if tasks:
                return f"{len(tasks)} of {len(streams)} tasks {what}: {', '.join(tasks[:5])}"
        return None

    def archive_partition(self, partition: EventPartition) -> ArchivedPartition:
        started = time.perf_counter()
        events_key, checksum_key, manifest_key = fmt.object_keys(self._prefix, partition.name)
        manifest = fmt.Manifest(partition.name, partition.lower.isoformat(),
                                partition.upper.isoformat(), events_key)
        with tempfile.TemporaryFile() as spool:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor(
                    name=f"archive_{partition.name}") as cursor:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cursor.itersize = 5000
                cursor.execute(sql.SQL(
                    "SELECT position, stream_id, version, event_type, message_id, payload,"
                    " recorded_at, stream_opened_at FROM {} ORDER BY stream_id, version"
                ).format(sql.Identifier(partition.name)))
                fmt.write_events(spool, (fmt.ArchivedEvent(r[0], r[1], r[2], r[3], r[4],
                                                           bytes(r[5]), r[6], r[7])
                                         for r in cursor), manifest)
            # No transaction open from here until the drop (the upload may take long).
            self._objects.put_stream(self.bucket, events_key, spool)
        self._objects.put_stream(self.bucket, checksum_key, BytesIO(
            f"{manifest.sha256}  events.avro\n".encode()), "text/plain")
        self._objects.put_stream(self.bucket, manifest_key, BytesIO(manifest.to_json()),
                                 "application/json")
        self.verify(manifest_key)
        self._drop_archived(partition, manifest, manifest_key)
        return ArchivedPartition(partition.name, self.location(events_key), len(manifest.tasks),
                                 manifest.event_count, manifest.size_bytes,
                                 time.perf_counter() - started)

    def _drop_archived(self, partition: EventPartition, manifest: fmt.Manifest,
                       manifest_key: str) -> None:
        name = sql.Identifier(partition.name)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = {self._lock_timeout_ms}")
            # Detach first: it locks the partition, so what is counted is what is dropped.
            conn.execute(sql.SQL("ALTER TABLE events DETACH PARTITION {}").format(name))
            counts: dict[str, int] = dict(conn.execute(sql.SQL(
                "SELECT stream_id, count(*) FROM {} GROUP BY stream_id").format(name)).fetchall())
            if counts != {t: e.events for t, e in manifest.tasks.items()}:
                raise fmt.ArchiveCorrupt(f"{partition.name} changed while it was archived; "
                                         "it stays (the next pass archives it again)")
            row = conn.execute(
                "INSERT INTO event_archives (partition_name, lower_bound, upper_bound, bucket,"
                " object_key, manifest_key, sha256, size_bytes, event_count, task_count,"
                " verified_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
                " RETURNING id",
                (partition.name, partition.lower, partition.upper, self.bucket,
                 manifest.object_key, manifest_key, manifest.sha256, manifest.size_bytes,
                 manifest.event_count, len(manifest.tasks))).fetchone()
            assert row is not None
            tasks = list(manifest.tasks)
            conn.execute(
                "INSERT INTO archived_tasks (task_id, archive_id, event_count, task_type,"
                " status, version, request_json, response_json, end_reason, submitted_at,"
                " updated_at, tenant, submitted_by, parent_task_id, parent_step)"
                " SELECT s.task_id, %s, m.events, s.task_type, s.status, s.version,"
                " s.request_json, s.response_json, s.end_reason, s.submitted_at, s.updated_at,"
                " s.tenant, s.submitted_by, s.parent_task_id, s.parent_step FROM task_status s"
                " JOIN unnest(%s::text[], %s::int[]) AS m(task_id, events) USING (task_id)",
                (row[0], tasks, [manifest.tasks[t].events for t in tasks]))
            for table in ("audit_entries", "timers", "step_progress"):
                conn.execute(sql.SQL("DELETE FROM {} WHERE task_id = ANY(%s)").format(
                    sql.Identifier(table)), (tasks,))
            conn.execute(sql.SQL("DROP TABLE {}").format(name))

    # -- verify ----------------------------------------------------------------------------

    def verify(self, manifest_key: str, keep: str | None = None) -> list[fmt.ArchivedEvent]:
        """Read an archive back and check it against its manifest; returns task ``keep``'s
        events (see ``archive_format.check_against``)."""
        manifest = fmt.Manifest.from_json(b"".join(
            self._objects.open_stream(self.bucket, manifest_key)))
        source = fmt.HashingReader(self._objects.open_stream(self.bucket, manifest.object_key))
        return fmt.check_against(manifest, source, keep)

    def verify_all(self) -> Iterator[tuple[str, str | None]]:
        """(partition, None or what is wrong) for every recorded archive."""
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT partition_name, bucket, manifest_key FROM event_archives"
                                " ORDER BY lower_bound").fetchall()
        for partition, bucket, manifest_key in rows:
            try:
                Archiver(self._pool, self._objects, bucket, self._prefix).verify(manifest_key)
                yield partition, None
            except (fmt.ArchiveCorrupt, OSError) as error:
                yield partition, str(error)

    # -- restore ---------------------------------------------------------------------------

    def archive_of(self, task_id: str) -> TaskArchive | None:
        with self._pool.connection() as conn:
            return archive_of(conn, task_id)

    def restore(self, task_id: str) -> int:
        """Bring an archived task's history back for audit; returns its event count. A second
        restore of the same task changes nothing."""
        with self._pool.connection() as conn:
            row = conn.execute("SELECT event_count FROM archived_tasks WHERE task_id = %s",
                               (task_id,)).fetchone()
        if row is None:
            raise ArchiveNotFound(f"task {task_id} has no archive")
        expected = row[0]
        events = self.archived_events(task_id)
        if len(events) != expected:
            raise fmt.ArchiveCorrupt(f"the archive holds {len(events)} events of task "
                                     f"{task_id}; {expected} were archived")
        with self._pool.connection() as conn, conn.transaction():
            restore_events(conn, {task_id: events})
        return len(events)

    def archived_events(self, task_id: str) -> list[fmt.ArchivedEvent]:
        """A task's events read from its archive (checked), without restoring them."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT a.bucket, a.manifest_key FROM archived_tasks t"
                " JOIN event_archives a ON a.id = t.archive_id WHERE t.task_id = %s",
                (task_id,)).fetchone()
        if row is None:
            raise ArchiveNotFound(f"task {task_id} has no archive")
        return Archiver(self._pool, self._objects, row[0], self._prefix).verify(
            row[1], keep=task_id)

    def restore_all(self) -> tuple[int, int]:
        """Restore every archived task (rebuild with archives); returns (tasks, events)."""
        with self._pool.connection() as conn:
            archives = conn.execute("SELECT id, bucket, manifest_key FROM event_archives"
                                    " ORDER BY id").fetchall()
        tasks = events = 0
        for archive_id, bucket, manifest_key in archives:
            manifest = fmt.Manifest.from_json(b"".join(
                self._objects.open_stream(bucket, manifest_key)))
            source = fmt.HashingReader(self._objects.open_stream(bucket, manifest.object_key))
            by_task: dict[str, list[fmt.ArchivedEvent]] = {}
            for event in fmt.read_events(source):
                by_task.setdefault(event.stream_id, []).append(event)
            source.drain()
            if source.digest.hexdigest() != manifest.sha256:
                raise fmt.ArchiveCorrupt(f"archive {archive_id} ({manifest.object_key}) does "
                                         "not match its SHA-256")
            with self._pool.connection() as conn, conn.transaction():
                restore_events(conn, by_task)
            tasks += len(by_task)
            events += sum(len(e) for e in by_task.values())
        return tasks, events

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def restore_events(conn: psycopg.Connection,
                   events_of: dict[str, list[fmt.ArchivedEvent]]) -> None:
    """Write archived tasks' events to ``restored_events`` and have the projector project
    those tasks again from them (their rows are rebuilt whole, audit included)."""
    tasks = list(events_of)
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO restored_events (position, stream_id, version, event_type, message_id,"
            " payload, recorded_at, stream_opened_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            [(e.position, e.stream_id, e.version, e.event_type, e.message_id, e.payload,
              e.recorded_at, e.stream_opened_at) for events in events_of.values()
             for e in events])
    for table in PROJECTION_TABLES:  # the rows a rebuild would make
        conn.execute(sql.SQL("DELETE FROM {} WHERE task_id = ANY(%s)").format(
            sql.Identifier(table)), (tasks,))
    conn.execute("INSERT INTO projection_queue (stream_id, version)"
                 " SELECT * FROM unnest(%s::text[], %s::int[])",
                 (tasks, [max(e.version for e in events_of[t]) for t in tasks]))
    conn.execute(f"NOTIFY {EVENTS_CHANNEL}")  # the projector wakes at once
    conn.execute("UPDATE archived_tasks SET restored_at = coalesce(restored_at, now())"
                 " WHERE task_id = ANY(%s)", (tasks,))


def archive_of(conn: psycopg.Connection, task_id: str) -> TaskArchive | None:
    """Where a task's archive is, or None when the task is not archived."""
    row = conn.execute(
        "SELECT a.bucket, a.object_key, a.dropped_at, t.restored_at FROM archived_tasks t"
        " JOIN event_archives a ON a.id = t.archive_id WHERE t.task_id = %s",
        (task_id,)).fetchone()
    if row is None:
        return None
    return TaskArchive(task_id, f"s3://{row[0]}/{row[1]}", row[2], row[3])


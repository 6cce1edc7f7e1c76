"""The orphan sweep's shell: list the buckets, read the tasks the keys name, keep the report,
and delete — only what a report at least a grace period old named and what is still garbage
now (the rule is ``tasksaga.core.orphans``). Reports and outcomes are kept in
``orphan_sweeps`` and ``orphan_objects`` (migration 017)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from psycopg_pool import ConnectionPool

from tasksaga.core.orphans import StoredObject, TaskRecord, Verdict, judge, task_ids_in

log = logging.getLogger(__name__)
_BATCH = 500


class ObjectListing(Protocol):
    def list_objects(self, bucket: str) -> Iterator[tuple[str, int]]: ...

    def exists(self, bucket: str, key: str) -> bool: ...

    def delete(self, bucket: str, key: str) -> None: ...


class SweepTooEarly(Exception):
    """The report is younger than the grace period."""


class SweepBusy(Exception):
    """Another sweep of the report is under way."""


# A sweep that started this long ago and never finished (its process died) is taken over.
TAKE_OVER_AFTER_S = 600


@dataclass(frozen=True)
class Finding:
    obj: StoredObject
    verdict: Verdict


class OrphanSweeper:
    def __init__(self, pool: ConnectionPool, objects: ObjectListing,
                 task_pools: Sequence[ConnectionPool] | None = None) -> None:
        self._pool = pool  # the sweeps' own records
        self._objects = objects
        # Where tasks are looked up: every shard's database (docs/scaling.md), lest a task of
        # another shard look unknown and its objects orphaned. Unset: ``pool`` alone.
        self._task_pools = list(task_pools) if task_pools is not None else [pool]

    def _now_ms(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT (extract(epoch FROM now()) * 1000)::bigint").fetchone()
        assert row is not None
        return int(row[0])

    def _tasks(self, ids: Iterable[str]) -> dict[str, TaskRecord]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows: list[Any] = []
        for pool in self._task_pools:
            with pool.connection() as conn:
                rows += conn.execute(
                    "SELECT task_id, tenant, status,"
                    " (extract(epoch FROM updated_at) * 1000)::bigint"
                    " FROM task_status WHERE task_id = ANY(%s) UNION ALL SELECT a.task_id,"
                    " a.tenant, 'Accepted', (extract(epoch FROM a.accepted_at) * 1000)::bigint"
                    " FROM accepted_tasks a WHERE a.task_id = ANY(%s) AND NOT EXISTS (SELECT 1"
                    " FROM task_status t WHERE t.task_id = a.task_id)",
                    (wanted, wanted)).fetchall()
        return {r[0]: TaskRecord(r[0], r[1], r[2], int(r[3])) for r in rows}

    def _garbage(self, objects: list[StoredObject], tenant: str, now_ms: int,
                 retention_ms: int) -> list[Finding]:
        tasks = self._tasks(i for o in objects for i in task_ids_in(o.key))
        found = []
        for obj in objects:
            verdict = judge(obj, tasks, now_ms, retention_ms)
            if verdict is not None and verdict.garbage and verdict.tenant == tenant:
                found.append(Finding(obj, verdict))
        return found

    def report(self, tenant: str, buckets: list[str], retention_hours: float,
               by: str) -> tuple[str, list[Finding]]:
        """Find the tenant's unreferenced objects and keep them as a report; its id."""
        now, retention_ms = self._now_ms(), int(retention_hours * 3_600_000)
        findings: list[Finding] = []
        for bucket in buckets:
            batch: list[StoredObject] = []
            for key, size in self._objects.list_objects(bucket):
                batch.append(StoredObject(bucket, key, size))
                if len(batch) >= _BATCH:
                    findings += self._garbage(batch, tenant, now, retention_ms)
                    batch = []
            findings += self._garbage(batch, tenant, now, retention_ms)
        sweep_id = str(uuid.uuid4())
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("INSERT INTO orphan_sweeps (sweep_id, tenant, buckets, retention_hours,"
                         " reported_by) VALUES (%s, %s, %s, %s, %s)",
                         (sweep_id, tenant, buckets, retention_hours, by))
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO orphan_objects (sweep_id, bucket, object_key, size, task_id,"
                    " reason) VALUES (%s, %s, %s, %s, %s, %s)",
                    [(sweep_id, f.obj.bucket, f.obj.key, f.obj.size, f.verdict.task_id,
                      f.verdict.reason) for f in findings])
        log.info("orphan report %s for %s: %d objects in %s", sweep_id, tenant, len(findings),
                 buckets)
        return sweep_id, findings

    def sweep_document(self, tenant: str, sweep_id: str) -> dict[str, Any] | None:
        with self._pool.connection() as conn:
            head = conn.execute(
                "SELECT sweep_id, buckets, retention_hours, reported_at, reported_by, swept_at,"
                " swept_by, extract(epoch FROM now() - reported_at) FROM orphan_sweeps"
                " WHERE sweep_id = %s AND tenant = %s", (sweep_id, tenant)).fetchone()
            if head is None:
                return None
            objects = conn.execute(
                "SELECT bucket, object_key, size, task_id, reason, outcome FROM orphan_objects"
                " WHERE sweep_id = %s ORDER BY bucket, object_key", (sweep_id,)).fetchall()
        return {
            "sweep_id": head[0], "buckets": head[1], "retention_hours": head[2],
            "reported_at": head[3].isoformat(), "reported_by": head[4],
            "swept_at": head[5].isoformat() if head[5] else None, "swept_by": head[6],
            "age_s": float(head[7]),
            "objects": [{"bucket": o[0], "key": o[1], "size": o[2], "task_id": o[3],
                         "reason": o[4], "outcome": o[5]} for o in objects],
        }

    def _claim(self, sweep_id: str, by: str) -> None:
        with self._pool.connection() as conn:
            claimed = conn.execute(
                "UPDATE orphan_sweeps SET sweep_started_at = now(), swept_by = %s"
                " WHERE sweep_id = %s AND swept_at IS NULL AND (sweep_started_at IS NULL"
                " OR sweep_started_at < now() - make_interval(secs => %s)) RETURNING 1",
                (by, sweep_id, TAKE_OVER_AFTER_S)).fetchone()
        if claimed is None:
            raise SweepBusy(f"report {sweep_id} is being swept already; its outcomes are at "
                            f"GET /orphans/reports/{sweep_id} once done")

    def sweep(self, tenant: str, sweep_id: str, grace_s: float, by: str) -> dict[str, Any]:
        """Delete the report's objects that are still garbage; each one's outcome kept.
        Raises KeyError (no such report), SweepTooEarly or SweepBusy."""
        document = self.sweep_document(tenant, sweep_id)
        if document is None:
            raise KeyError(sweep_id)
        if document["swept_at"] is not None:
            return document  # swept already: the outcomes stand
        if document["age_s"] < grace_s:
            raise SweepTooEarly(f"report {sweep_id} is {document['age_s']:.0f} s old; objects "
                                f"are deleted only from a report at least {grace_s:g} s old "
                                "(TASKSAGA_ORPHAN_GRACE_S)")
        self._claim(sweep_id, by)
        listed = [StoredObject(o["bucket"], o["key"], o["size"]) for o in document["objects"]]
        still = {(f.obj.bucket, f.obj.key) for f in self._garbage(
            listed, tenant, self._now_ms(), int(document["retention_hours"] * 3_600_000))}
        outcomes = []
        for obj in listed:
            if (obj.bucket, obj.key) not in still:
                outcome = "kept: referenced again since the report"
            elif not self._objects.exists(obj.bucket, obj.key):
                outcome = "kept: gone already"
            else:
                self._objects.delete(obj.bucket, obj.key)
                outcome = "deleted"
            outcomes.append((outcome, sweep_id, obj.bucket, obj.key))
        with self._pool.connection() as conn, conn.transaction():
            with conn.cursor() as cursor:
                cursor.executemany("UPDATE orphan_objects SET outcome = %s WHERE sweep_id = %s"
                                   " AND bucket = %s AND object_key = %s", outcomes)
            conn.execute("UPDATE orphan_sweeps SET swept_at = now(), swept_by = %s"
                         " WHERE sweep_id = %s", (by, sweep_id))
        log.info("orphan sweep %s by %s: %d deleted of %d reported", sweep_id, by,
                 sum(o[0] == "deleted" for o in outcomes), len(outcomes))
        swept = self.sweep_document(tenant, sweep_id)
        assert swept is not None
        return swept

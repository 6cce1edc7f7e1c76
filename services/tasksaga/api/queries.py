"""Reads of the projections for status, audit and cancel checks."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from tasksaga.adapters.archive import TaskArchive, archive_of
from tasksaga.adapters.payload_crypto import PayloadCipher, column_context
from tasksaga.adapters.projections import ProjectionLag, projection_lag
from tasksaga.api.fan_out_status import instances_document, take_instances
from tasksaga.core.definition import TaskDefinition
from tasksaga.workflow.definition import WorkflowDefinition, awaits_in_order

#: The status of a task accepted with 202 that the projections do not show yet.
ACCEPTED = "Accepted"


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    task_type: str
    status: str
    version: int
    request_json: str
    response_json: str | None
    end_reason: str | None
    submitted_at: datetime
    updated_at: datetime
    failed_step: str | None = None
    error_trace_id: str | None = None
    tenant: str = "default"
    submitted_by: str | None = None
    parent_task_id: str | None = None
    parent_step: str | None = None


@dataclass(frozen=True)
class TaskFilter:
    """A search over one tenant's tasks; every list and bulk action goes through it."""

    tenant: str
    task_types: list[str]
    statuses: list[str] | None = None
    submitted_after: datetime | None = None
    submitted_before: datetime | None = None
    idempotency_key: str | None = None

    def sql(self) -> tuple[str, list[Any]]:
        query = " WHERE tenant = %s AND task_type = ANY(%s)"
        params: list[Any] = [self.tenant, self.task_types]
        if self.statuses is not None:
            query += " AND status = ANY(%s)"
            params.append(self.statuses)
        if self.submitted_after is not None:
            query += " AND submitted_at >= %s"
            params.append(self.submitted_after)
        if self.submitted_before is not None:
            query += " AND submitted_at < %s"
            params.append(self.submitted_before)
        if self.idempotency_key is not None:
            query += " AND idempotency_key = %s"
            params.append(self.idempotency_key)
        return query, params


class LinkedRows(Protocol):
    """Where a status document reads the rows of other tasks and the notifier's rows when
    they are not all in its task's database (shards: api/shard_queries.py)."""

    def tasks_by_id(self, task_ids: list[str]) -> dict[str, dict[str, Any]]: ...

    def downstream(self, task_id: str) -> list[dict[str, Any]]: ...

    def deliveries(self, task_id: str) -> list[dict[str, Any]]: ...


class ProjectionQueries:
    def __init__(self, pool: ConnectionPool, cipher: PayloadCipher) -> None:
        self._pool = pool
        self._cipher = cipher  # opens the payload columns the projector sealed
        self._accepted = 0

    def task(self, task_id: str) -> TaskRow | None:
        """The projected task, or an Accepted one the projector has not seen yet."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT task_id, task_type, status, version, request_json, response_json,"
                " end_reason, submitted_at, updated_at, failed_step, error_trace_id, tenant,"
                " submitted_by, parent_task_id, parent_step FROM task_status"
                " WHERE task_id = %s",
                (task_id,),
            ).fetchone()
            if row is None:
                # A task whose projection rows are gone (a rebuild without its archive, a
                # restore not projected yet): the summary its archive kept.
                row = conn.execute(
                    "SELECT task_id, task_type, status, version, request_json, response_json,"
                    " end_reason, submitted_at, updated_at, NULL, NULL, tenant, submitted_by,"
                    " parent_task_id, parent_step FROM archived_tasks WHERE task_id = %s",
                    (task_id,)).fetchone()
            if row is None:
                marker = conn.execute(
                    "SELECT task_type, request_json, accepted_at, tenant, submitted_by"
                    " FROM accepted_tasks WHERE task_id = %s", (task_id,)).fetchone()
                if marker is None:
                    return None
                request = self._cipher.open(marker[1], column_context(
                    task_id, "accepted_tasks.request_json"))
                return TaskRow(task_id, marker[0], ACCEPTED, 0, request, None, None, marker[2],
                               marker[2], tenant=marker[3], submitted_by=marker[4])
        return self._opened(TaskRow(*row))

    def mark_accepted(self, task_id: str, tenant: str, task_type: str,
                      submitted_by: str | None, request_json: str) -> None:
        """Record a 202 at once; markers older than a day are pruned now and then."""
        sealed = self._cipher.seal(request_json,
                                   column_context(task_id, "accepted_tasks.request_json"))
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO accepted_tasks (task_id, tenant, task_type, submitted_by,"
                " request_json) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (task_id, tenant, task_type, submitted_by, sealed))
            self._accepted += 1
            if self._accepted % 100 == 1:
                conn.execute("DELETE FROM accepted_tasks"
                             " WHERE accepted_at < now() - interval '1 day'")

    def _opened(self, row: TaskRow) -> TaskRow:
        return replace(
            row,
            request_json=self._cipher.open(
                row.request_json, column_context(row.task_id, "task_status.request_json")),
            response_json=self._cipher.open_optional(
                row.response_json, column_context(row.task_id, "task_status.response_json")),
        )

    def _opened_step(self, task_id: str, record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "data_json": self._cipher.open_optional(
            record["data_json"],
            column_context(task_id, "step_records.data_json", record["step"]))}

    def tasks_by_id(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Projected tasks' type and status, by id (those this database has)."""
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return {r["task_id"]: r for r in cur.execute(
                "SELECT task_id, task_type, status FROM task_status WHERE task_id = ANY(%s)",
                (task_ids,))}

    def downstream(self, task_id: str) -> list[dict[str, Any]]:
        """The tasks started on the task's completion (depends_on) this database has."""
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(_DOWNSTREAM, (task_id,)).fetchall()

    def deliveries(self, task_id: str) -> list[dict[str, Any]]:
        """The notifier's webhook deliveries of the task this database recorded."""
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(_DELIVERIES, (task_id,)).fetchall()

    def status_document(self, row: TaskRow, definition: TaskDefinition | None,
                        linked: LinkedRows | None = None) -> dict[str, Any]:
        """The task's document; ``linked`` reads its children, downstream tasks and webhook
        deliveries (default: this database, which then holds them all)."""
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            records = {
                r["step"]: r for r in cur.execute(
                    "SELECT step, status, attempt, compensation_attempt, data_json, error_type,"
                    " error_message, completion_rank, updated_at, trace_id, waiting_until"
                    " FROM step_records"
                    " WHERE task_id = %s", (row.task_id,))
            }
            progress = {
                r["step"]: r for r in cur.execute(
                    "SELECT step, attempt, progress, message, reported_at FROM step_progress"
                    " WHERE task_id = %s", (row.task_id,))
            }
            conditions = cur.execute(
                "SELECT step, description, function, result, context_summary, evaluated_at"
                " FROM condition_snapshots WHERE task_id = %s ORDER BY evaluated_at",
                (row.task_id,)).fetchall()
            # Tasks this one started: its child steps' children, and the tasks that
            # depend_on it (started on its completion). Always of the same tenant.
            children = cur.execute(
                "SELECT s.step, s.child_task_id AS task_id, t.task_type, t.status,"
                " s.error_type"
                " FROM step_records s LEFT JOIN task_status t ON t.task_id = s.child_task_id"
                " WHERE s.task_id = %s AND s.child_task_id IS NOT NULL ORDER BY s.step",
                (row.task_id,)).fetchall()
            archive = archive_of(conn, row.task_id)
            if linked is None:
                downstream = cur.execute(_DOWNSTREAM, (row.task_id,)).fetchall()
                deliveries = cur.execute(_DELIVERIES, (row.task_id,)).fetchall()
        if linked is not None:  # each child by its own id: its row may be in another database
            found = linked.tasks_by_id([c["task_id"] for c in children])
            for child in children:
                other = found.get(child["task_id"], {})
                child["task_type"], child["status"] = other.get("task_type"), other.get("status")
            downstream = linked.downstream(row.task_id)
            deliveries = linked.deliveries(row.task_id)
        # Fan-out instances are shown without their data (their step's list has it): their
        # records are not opened, a 1,000-item status decrypts one data column, not 1,001.
        instances = take_instances(definition, records)
        steps = {name: self._opened_step(row.task_id, r) for name, r in records.items()}
        if isinstance(definition, WorkflowDefinition):  # its awaits, as they happened
            order = awaits_in_order({n: r["completion_rank"] for n, r in steps.items()})
        else:
            order = [s.name for s in definition.steps] if definition else []
        # A task of an older version may have recorded steps the newest one renamed.
        order += sorted(name for name in steps if name not in order)
        return {
            "task_id": row.task_id,
            "task_type": row.task_type,
            "status": row.status,
            "version": row.version,
            "submitted_at": row.submitted_at.isoformat(),
            "updated_at": row.updated_at.isoformat(),
            "request": json.loads(row.request_json),
            "response": json.loads(row.response_json) if row.response_json else None,
            "end_reason": row.end_reason,
            "failure": (
                {"step": row.failed_step, "trace_id": row.error_trace_id}
                if row.failed_step else None
            ),
            "steps": [_with_instances(
                _step_document(name, steps.get(name), progress.get(name), row.status in _ENDED),
                instances, progress) for name in order],
            "conditions": [_jsonable(c) for c in conditions],
            "notifications": [_jsonable(d) for d in deliveries],
            "parent": _parent_document(row),
            "children": [_child_document(c) for c in children],
            "downstream": [dict(d) for d in downstream],
            **({"archived": archive_document(archive)} if archive else {}),
        }

    def archive(self, task_id: str) -> TaskArchive | None:
        with self._pool.connection() as conn:
            return archive_of(conn, task_id)

    def step_status(self, task_id: str, step: str) -> str | None:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT status FROM step_records WHERE task_id = %s AND step = %s",
                               (task_id, step)).fetchone()
        return str(row[0]) if row else None

    def signal_lines(self, task_id: str, signal: str) -> list[str]:
        """The audit lines of the signals received for wait_for step ``signal``."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT summary FROM audit_entries WHERE task_id = %s AND step = %s"
                " AND event_type = 'SignalReceived'", (task_id, signal)).fetchall()
        return [str(r[0]) for r in rows]

    def audit(self, task_id: str, after_version: int = 0,
              limit: int = 1000) -> list[dict[str, Any]]:
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT version, event_type, step, summary, occurred_at FROM audit_entries"
                " WHERE task_id = %s AND version > %s ORDER BY version LIMIT %s",
                (task_id, after_version, limit)).fetchall()
        return [_jsonable(r) for r in rows]

    def list_tasks(self, where: TaskFilter, limit: int,
                   before: tuple[datetime, str] | None = None) -> list[dict[str, Any]]:
        """One tenant's matching tasks, newest first, ``limit`` at most; keyset paging on
        (submitted_at, task_id) so a page never skips or repeats a task."""
        query, params = where.sql()
        if before is not None:
            query += " AND (submitted_at, task_id) < (%s, %s)"
            params += [before[0], before[1]]
        query += " ORDER BY submitted_at DESC, task_id DESC LIMIT %s"
        params.append(limit)
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT task_id, task_type, status, version, submitted_at, updated_at,"
                " idempotency_key FROM task_status" + query, params).fetchall()
        return [_jsonable(r) for r in rows]

    def count_tasks(self, where: TaskFilter) -> int:
        query, params = where.sql()
        with self._pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM task_status" + query, params).fetchone()
        return int(row[0]) if row else 0

    def projection_lag(self) -> ProjectionLag:
        return projection_lag(self._pool)

    def close(self) -> None:
        self._pool.close()

    def ready(self) -> bool:
        with self._pool.connection() as conn:
            conn.execute("SELECT 1 FROM task_status LIMIT 1")
        return True


_ENDED = frozenset({"Completed", "Failed", "Cancelled", "CompensationFailed", "NeedsAttention",
                    "Resolved"})


_DOWNSTREAM = ("SELECT task_id, task_type, status FROM task_status"
               " WHERE parent_task_id = %s AND parent_step IS NULL ORDER BY task_type")
_DELIVERIES = ("SELECT event_type, attempt, status_code, outcome, error, attempted_at"
               " FROM webhook_deliveries WHERE task_id = %s ORDER BY attempted_at")


def _child_document(child: dict[str, Any]) -> dict[str, Any]:
    """A child step's task; one not projected yet shows no type and status Accepted, one no
    orchestrator could start (its type not deployed) Rejected."""
    error_type = child.pop("error_type")
    if child["status"] is None:
        child["status"] = "Rejected" if error_type == "ChildTaskRejected" else ACCEPTED
    return child


def _parent_document(row: TaskRow) -> dict[str, Any] | None:
    """Who started this task: a parent's child step, or an upstream task (depends_on)."""
    if row.parent_task_id is None:
        return None
    return {"task_id": row.parent_task_id, "step": row.parent_step,
            "link": "child" if row.parent_step else "depends_on"}


def _step_document(
    name: str, record: dict[str, Any] | None, progress: dict[str, Any] | None,
    task_ended: bool = False,
) -> dict[str, Any]:
    if record is None:
        # A step with no record on an ended task never ran, and never will.
        return {"step": name, "status": "NotRun" if task_ended else "Pending", "attempt": 0}
    document = {
        "step": name,
        "status": record["status"],
        "attempt": record["attempt"],
        "compensation_attempt": record["compensation_attempt"],
        "data": json.loads(record["data_json"]) if record["data_json"] else None,
        "error_type": record["error_type"],
        "error_message": record["error_message"],
        "completion_rank": record["completion_rank"],
        "trace_id": record["trace_id"],
        "updated_at": record["updated_at"].isoformat(),
    }
    if record["waiting_until"] is not None:  # a sleep's wake-up, a wait_for's timeout
        document["waiting_until"] = record["waiting_until"].isoformat()
    if progress is not None and progress["attempt"] == record["attempt"]:
        document["progress"] = progress["progress"]
        document["progress_message"] = progress["message"]
    return document


def _with_instances(document: dict[str, Any],
                    instances: dict[str, list[tuple[int, dict[str, Any]]]],
                    progress: dict[str, dict[str, Any]]) -> dict[str, Any]:
    entries = instances.get(document["step"])
    if entries is not None:
        document["instances"] = instances_document(entries, progress, document["step"],
                                                   document["status"])
    return document


def archive_document(archive: TaskArchive) -> dict[str, Any]:
    """What a status says of an archived task: where its history is, and whether it was
    brought back for audit."""
    return {"location": archive.location, "archived_at": archive.archived_at.isoformat(),
            "restored_at": archive.restored_at.isoformat() if archive.restored_at else None}


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}

"""The API's reads over a sharded store: a task's reads go to its shard's projections, lists
merge every shard's page (core/shards.py, docs/scaling.md).

Lists page by the key (submitted_at, task_id), newest first, which every shard already pages
by: each shard returns its first ``limit`` rows after the cursor, the merge keeps the first
``limit`` of their union, and the last row kept is the next cursor. A task is on one shard
only, so the key is unique across shards and a page never skips or repeats a task.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from tasksaga.adapters.archive import TaskArchive
from tasksaga.adapters.projections import ProjectionLag
from tasksaga.api.queries import ProjectionQueries, TaskFilter, TaskRow
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.shards import ShardMap


def list_key(row: Mapping[str, Any]) -> tuple[datetime, str]:
    """A listed row's paging key (submitted_at, read back from its ISO text; task id)."""
    submitted = row["submitted_at"]
    at = submitted if isinstance(submitted, datetime) else datetime.fromisoformat(submitted)
    return (at, str(row["task_id"]))


def merge_pages(pages: Iterable[Sequence[dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` rows, newest first, of pages each already newest first."""
    merged = heapq.merge(*pages, key=list_key, reverse=True)
    return [row for _, row in zip(range(limit), merged, strict=False)]


class ShardedQueries:
    """ProjectionQueries over every shard (the first also holds the rows of no task and the
    notifier's)."""

    def __init__(self, shards: ShardMap, queries: Mapping[str, ProjectionQueries]) -> None:
        missing = sorted(set(shards.shards) - set(queries))
        if missing:
            raise ValueError(f"no projection queries for shards {', '.join(missing)}")
        self._shards = shards
        self._queries = dict(queries)

    def on(self, task_id: str) -> ProjectionQueries:
        """The queries of the task's shard."""
        return self._queries[self._shards.shard_of(task_id)]

    def task(self, task_id: str) -> TaskRow | None:
        return self.on(task_id).task(task_id)

    def mark_accepted(self, task_id: str, tenant: str, task_type: str,
                      submitted_by: str | None, request_json: str) -> None:
        # On the task's shard: task() reads the marker there until the projection has it.
        self.on(task_id).mark_accepted(task_id, tenant, task_type, submitted_by, request_json)

    def status_document(self, row: TaskRow, definition: TaskDefinition | None
                        ) -> dict[str, Any]:
        """Read on the task's shard; its children and downstream tasks each on their own
        shard, its webhook deliveries on the first shard (the notifier's tables are there)."""
        return self.on(row.task_id).status_document(row, definition, linked=self)

    def tasks_by_id(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Tasks' type and status, each read on its own shard."""
        by_shard: dict[str, list[str]] = {}
        for task_id in task_ids:
            by_shard.setdefault(self._shards.shard_of(task_id), []).append(task_id)
        found: dict[str, dict[str, Any]] = {}
        for shard, ids in by_shard.items():
            found.update(self._queries[shard].tasks_by_id(ids))
        return found

    def downstream(self, task_id: str) -> list[dict[str, Any]]:
        """The tasks started on the task's completion, on every shard (each has its own id)."""
        rows = [r for q in self._all() for r in q.downstream(task_id)]
        return sorted(rows, key=lambda r: (r["task_type"], r["task_id"]))

    def deliveries(self, task_id: str) -> list[dict[str, Any]]:
        return self._queries[self._shards.home].deliveries(task_id)

    def archive(self, task_id: str) -> TaskArchive | None:
        return self.on(task_id).archive(task_id)

    def step_status(self, task_id: str, step: str) -> str | None:
        return self.on(task_id).step_status(task_id, step)

    def signal_lines(self, task_id: str, signal: str) -> list[str]:
        return self.on(task_id).signal_lines(task_id, signal)

    def audit(self, task_id: str, after_version: int = 0,
              limit: int = 1000) -> list[dict[str, Any]]:
        return self.on(task_id).audit(task_id, after_version, limit)

    def list_tasks(self, where: TaskFilter, limit: int,
                   before: tuple[datetime, str] | None = None) -> list[dict[str, Any]]:
        return merge_pages((q.list_tasks(where, limit, before) for q in self._all()), limit)

    def count_tasks(self, where: TaskFilter) -> int:
        return sum(q.count_tasks(where) for q in self._all())

    def projection_lag(self) -> ProjectionLag:
        """The furthest behind shard's seconds, every shard's events."""
        lags = [q.projection_lag() for q in self._all()]
        return ProjectionLag(seconds=max(lag.seconds for lag in lags),
                             events=sum(lag.events for lag in lags))

    def close(self) -> None:
        for queries in self._all():
            queries.close()

    def ready(self) -> bool:
        return all(q.ready() for q in self._all())

    def _all(self) -> list[ProjectionQueries]:
        return [self._queries[name] for name in self._shards.shards]


#: What the API reads tasks through: one database's projections, or every shard's.
TaskQueries = ProjectionQueries | ShardedQueries

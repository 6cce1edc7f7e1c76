"""Lists over shards: every shard's page merged by (submitted_at, task_id), newest first, so
paging with the last row as the cursor never skips or repeats a task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tasksaga.api.shard_queries import list_key, merge_pages

START = datetime(2026, 1, 1, tzinfo=UTC)


def row(task_id: str, offset_ms: int) -> dict[str, Any]:
    return {"task_id": task_id,
            "submitted_at": (START + timedelta(milliseconds=offset_ms)).isoformat()}


def page(shard: list[dict[str, Any]], limit: int,
         before: tuple[datetime, str] | None) -> list[dict[str, Any]]:
    """One shard's list_tasks: newest first, strictly before the cursor."""
    rows = sorted(shard, key=list_key, reverse=True)
    return [r for r in rows if before is None or list_key(r) < before][:limit]


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 50)), max_size=40),
       st.integers(1, 7))
def test_paging_the_merged_list_returns_every_task_once_newest_first(
    tasks: list[tuple[int, int]], limit: int,
) -> None:
    # Equal timestamps on several shards too: the task id breaks the tie.
    shards: list[list[dict[str, Any]]] = [[], [], []]
    for index, (shard, offset) in enumerate(tasks):
        shards[shard].append(row(f"t{index:03d}", offset))
    seen: list[dict[str, Any]] = []
    before: tuple[datetime, str] | None = None
    while True:
        merged = merge_pages([page(s, limit, before) for s in shards], limit)
        seen += merged
        if len(merged) < limit:
            break
        before = list_key(merged[-1])
    assert [r["task_id"] for r in seen] == [
        r["task_id"] for r in sorted((r for s in shards for r in s), key=list_key,
                                     reverse=True)]


def test_the_key_orders_by_time_not_by_the_text_of_differing_offsets() -> None:
    utc = {"task_id": "a", "submitted_at": "2026-01-01T12:00:00+00:00"}
    cet = {"task_id": "b", "submitted_at": "2026-01-01T12:30:00+01:00"}  # 11:30 UTC: older
    assert [r["task_id"] for r in merge_pages([[cet], [utc]], 2)] == ["a", "b"]

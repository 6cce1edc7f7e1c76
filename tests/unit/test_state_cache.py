from __future__ import annotations

from dataclasses import replace

from tasksaga.core.state import TaskState, TaskStatus
from tasksaga.orchestrator.state_cache import StateCache


def test_the_cache_keeps_the_most_recent_and_drops_finished_tasks() -> None:
    cache = StateCache(capacity=2)
    running = TaskState(status=TaskStatus.RUNNING, version=3)
    cache.put_all({"a": running, "b": running})
    assert cache.get("a") is running  # a is now the most recent
    cache.put_all({"c": running})
    assert cache.get("b") is None and cache.get("a") is running
    cache.put_all({"a": replace(running, status=TaskStatus.COMPLETED)})
    assert cache.get("a") is None
    cache.evict(["c"])
    assert len(cache) == 0

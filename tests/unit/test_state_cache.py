from __future__ import annotations

from dataclasses import replace

from tasksaga.core.state import StepState, TaskState, TaskStatus
from tasksaga.orchestrator.state_cache import StateCache, state_size


def test_the_cache_keeps_the_most_recent_and_drops_finished_tasks() -> None:
    running = TaskState(status=TaskStatus.RUNNING, version=3)
    cache = StateCache(max_bytes=2 * state_size(running))
    cache.put_all({"a": running, "b": running})
    assert cache.get("a") is running  # a is now the most recent
    cache.put_all({"c": running})
    assert cache.get("b") is None and cache.get("a") is running
    cache.put_all({"a": replace(running, status=TaskStatus.COMPLETED)})
    assert cache.get("a") is None
    cache.evict(["c"])
    assert len(cache) == 0 and cache.bytes == 0


def test_the_cache_is_bounded_by_bytes_not_entries() -> None:
    """A few states with large step data evict each other; many small ones fit together."""
    big = TaskState(status=TaskStatus.RUNNING, steps={
        "S1": StepState("S1", data_json="x" * 1_000_000)})
    small = TaskState(status=TaskStatus.RUNNING)
    cache = StateCache(max_bytes=2_500_000)
    cache.put_all({f"big{i}": big for i in range(5)})
    assert len(cache) == 2 and cache.bytes <= 2_500_000
    cache.put_all({f"small{i}": small for i in range(1000)})
    assert len(cache) >= 1000 and cache.bytes <= 2_500_000
    cache.put_all({"huge": replace(big, request_json="y" * 3_000_000)})
    assert cache.get("huge") is None, "a state larger than the bound is not cached"

"""Aggregates cached by the orchestrator that owns them, so a message costs no stream read.

A cached state can be stale only if another writer appended to the stream (a rebalance moved
the task, or a timer fired elsewhere). Then the next append conflicts on (stream, version), the
transaction rolls back, the entry is evicted and the message is retried from the log: the cache
can cost a retry, never a wrong decision.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from tasksaga.core.state import TaskState


class StateCache:
    def __init__(self, capacity: int = 50_000) -> None:
        self._capacity = capacity
        self._states: OrderedDict[str, TaskState] = OrderedDict()

    def get(self, task_id: str) -> TaskState | None:
        state = self._states.get(task_id)
        if state is not None:
            self._states.move_to_end(task_id)
        return state

    def put_all(self, states: dict[str, TaskState]) -> None:
        for task_id, state in states.items():
            if state.status.is_terminal:
                self._states.pop(task_id, None)  # finished tasks are rarely touched again
                continue
            self._states[task_id] = state
            self._states.move_to_end(task_id)
        while len(self._states) > self._capacity:
            self._states.popitem(last=False)

    def evict(self, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            self._states.pop(task_id, None)

    def __len__(self) -> int:
        return len(self._states)

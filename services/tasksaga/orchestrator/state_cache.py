"""Aggregates cached by the process that owns them, so a message costs no stream read.

A cached state can be stale only if another writer appended to the stream (a rebalance moved
the task, or a timer fired elsewhere). Then the next append conflicts on (stream, version), the
transaction rolls back, the entry is evicted and the message is retried from the log: the cache
can cost a retry, never a wrong decision. Users of a cached state check its version against
the stream's (the orchestrator under the stream lock, the projector against task_status).

The bound is in bytes, not entries: a task's state holds its request and every step's data
(JSON strings of any size), so ten thousand entries can be ten kilobytes or ten gigabytes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from tasksaga.core.state import TaskState

DEFAULT_MAX_BYTES = 128 * 1024 * 1024
# Per-entry overhead of the dataclasses, dicts and strings around the payload bytes: a rough
# figure (measured with tracemalloc on a 3-step state), enough to keep tiny states from
# escaping the bound by the million.
ENTRY_OVERHEAD = 600
STEP_OVERHEAD = 400


def state_size(state: TaskState) -> int:
    """Approximate memory held by one cached state, dominated by its JSON strings."""
    size = ENTRY_OVERHEAD + len(state.task_id) + len(state.request_json)
    size += len(state.response_json or "") + len(state.end_reason or "")
    size += len(state.callback_url or "")
    for step in state.steps.values():
        size += STEP_OVERHEAD + len(step.name) + len(step.data_json or "")
        size += len(step.error_message or "") + len(step.error_type or "")
    for fan_out in state.fan_outs.values():  # kept as they change: no pass over instances
        size += fan_out.size * STEP_OVERHEAD + fan_out.data_bytes
        size += fan_out.items_bytes
    return size


class StateCache:
    """Least recently used states, bounded by ``max_bytes`` of approximate state size."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, keep_terminal: bool = False) -> None:
        if max_bytes <= 0:
            raise ValueError(f"the cache bound must be a positive number of bytes: {max_bytes}")
        self._max_bytes = max_bytes
        # The orchestrator drops finished tasks (rarely touched again); the projector keeps
        # them: it cannot tell whether an event (e.g. a compensation retry) will follow.
        self._keep_terminal = keep_terminal
        self._states: OrderedDict[str, tuple[TaskState, int]] = OrderedDict()
        self._bytes = 0

    def get(self, task_id: str) -> TaskState | None:
        entry = self._states.get(task_id)
        if entry is None:
            return None
        self._states.move_to_end(task_id)
        return entry[0]

    def put_all(self, states: dict[str, TaskState]) -> None:
        for task_id, state in states.items():
            self._pop(task_id)
            if state.status.is_terminal and not self._keep_terminal:
                continue
            size = state_size(state)
            if size > self._max_bytes:
                continue  # larger than the whole cache: read from the log when needed
            self._states[task_id] = (state, size)
            self._bytes += size
        while self._bytes > self._max_bytes:
            _, (_, size) = self._states.popitem(last=False)
            self._bytes -= size

    def evict(self, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            self._pop(task_id)

    def clear(self) -> None:
        self._states.clear()
        self._bytes = 0

    def _pop(self, task_id: str) -> None:
        entry = self._states.pop(task_id, None)
        if entry is not None:
            self._bytes -= entry[1]

    @property
    def bytes(self) -> int:
        """Approximate bytes held now (never above the bound)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._states)

"""The fold's record of one expanded for_each step: its items and its instances (pure).

Instances live in a persistent table of fixed-size chunks: changing one copies its chunk and
the outer tuple (O(sqrt n) for n items), never the whole table, so folding a 1,000-item
fan-out is not quadratic. Counts by status are kept as the instances change, so the rules
ask "how many are running?" in constant time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_MIN_CHUNK = 32


@dataclass(frozen=True)
class ChunkedTable(Generic[T]):
    """An immutable sequence of optional entries with cheap single-entry updates."""

    size: int
    chunk: int
    chunks: tuple[tuple[T | None, ...], ...]

    @staticmethod
    def empty(size: int) -> ChunkedTable[T]:
        chunk = max(_MIN_CHUNK, math.isqrt(max(size, 1)))
        count = (size + chunk - 1) // chunk
        blank: tuple[T | None, ...] = (None,) * chunk
        return ChunkedTable(size, chunk, (blank,) * count)

    def get(self, index: int) -> T | None:
        return self.chunks[index // self.chunk][index % self.chunk]

    def set(self, index: int, value: T) -> ChunkedTable[T]:
        outer, inner = divmod(index, self.chunk)
        row = self.chunks[outer]
        changed = (*row[:inner], value, *row[inner + 1:])
        # The constructor, not dataclasses.replace: this runs for every instance event.
        return ChunkedTable(self.size, self.chunk,
                            (*self.chunks[:outer], changed, *self.chunks[outer + 1:]))

    def __iter__(self) -> Iterator[T | None]:
        for outer, row in enumerate(self.chunks):
            yield from row[:max(0, min(self.chunk, self.size - outer * self.chunk))]


@dataclass(frozen=True)
class FanOutState:
    """``instances`` holds the StepState of each instance touched so far (None: never
    dispatched, Pending). ``counts``: instances by step status (str values)."""

    step: str
    items: tuple[str, ...]
    instances: ChunkedTable[Any]
    counts: Mapping[str, int]
    # Where launching goes on: instances below it were dispatched (or, after a forward retry,
    # are not waiting to run again). Instances start in item order.
    launched: int = 0
    # No completed instance at or above this index: compensation walks down from here.
    compensate_below: int = 0
    first_failure: int | None = None  # the first instance that failed for good
    data_bytes: int = 0  # the instances' data, for the orchestrator's cache bound
    items_bytes: int = 0

    @staticmethod
    def expanded(step: str, items: tuple[str, ...]) -> FanOutState:
        return FanOutState(step, items, ChunkedTable.empty(len(items)),
                           {"Pending": len(items)} if items else {},
                           items_bytes=sum(len(item) for item in items))

    @property
    def size(self) -> int:
        return len(self.items)

    def count(self, *statuses: str) -> int:
        return sum(self.counts.get(s, 0) for s in statuses)

    def updated(self, index: int, before: Any, after: Any) -> FanOutState:
        """The state with instance ``index`` changed from ``before`` to ``after`` (both
        StepStates; ``before`` is what ``get`` gave, a default one for an untouched one)."""
        counts = dict(self.counts)
        old, new = str(before.status), str(after.status)
        if old != new:
            counts[old] = counts.get(old, 0) - 1
            counts[new] = counts.get(new, 0) + 1
        launched, compensate_below = self.launched, self.compensate_below
        first_failure, data_bytes = self.first_failure, self.data_bytes
        if old == "Pending" and new != "Pending":  # dispatched: they start in item order
            launched = max(launched, index + 1)
        if new == "Completed" and old != "Completed":
            compensate_below = max(compensate_below, index + 1)
        if new == "Compensating" and old != "Compensating":
            compensate_below = min(compensate_below, index)
        if new == "Failed" and first_failure is None and after.error_type not in (
                "Cancelled", "Superseded"):
            first_failure = index
        if after.data_json is not before.data_json:
            data_bytes += len(after.data_json or "") - len(before.data_json or "")
        # The constructor, not dataclasses.replace: this runs for every instance event.
        return FanOutState(self.step, self.items, self.instances.set(index, after), counts,
                           launched, compensate_below, first_failure, data_bytes,
                           self.items_bytes)

    def reopened(self, reset: Callable[[Any], Any]) -> FanOutState:
        """After an operator's forward retry: every failed instance ``reset`` (back to
        Pending, a fresh retry budget); launching resumes at the first of them. One pass."""
        table, counts, first = self.instances, dict(self.counts), None
        for index, instance in enumerate(self.instances):
            if instance is not None and str(instance.status) == "Failed":
                table = table.set(index, reset(instance))
                counts["Failed"] -= 1
                counts["Pending"] = counts.get("Pending", 0) + 1
                first = index if first is None else first
        return FanOutState(self.step, self.items, table, counts,
                           self.launched if first is None else first, self.compensate_below,
                           None, self.data_bytes, self.items_bytes)

    def gathered_json(self) -> str:
        """The completed instances' data as one JSON list, in item order."""
        return "[" + ",".join(
            s.data_json or "{}" for s in self.instances
            if s is not None and str(s.status) == "Completed") + "]"

"""What the parallel consumer (``kafka_parallel``) keeps per partition: each running message's
``Lease`` (revoked when a rebalance moves its partition) and the ``OffsetTracker`` that says how
far a partition's position may be committed while offsets finish out of order."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from tasksaga.adapters.wire import Envelope

PartitionKey = tuple[str, int]


class Lease:
    """One message's hold on its partition, revoked when the partition moves to another
    consumer. Callbacks registered with ``on_revoke`` run once, on revocation."""

    def __init__(self, topic: str, partition: int, offset: int, inherited: bool = True) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        # The record was already in its partition when this consumer was given it: a previous
        # owner may have handled it. False only when known to be newer (the safe default).
        self.inherited = inherited
        self._revoked = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def revoked(self) -> bool:
        return self._revoked.is_set()

    def on_revoke(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._revoked.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def revoke(self) -> None:
        with self._lock:
            self._revoked.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


# Handles one message; True when done (commit it), False when it must be redelivered.
LeasedHandler = Callable[[Envelope, Lease], bool]


@dataclass
class _Partition:
    running: set[int] = field(default_factory=set)
    held: set[int] = field(default_factory=set)  # not running, not done: blocks the position
    highest_done: int = -1
    committed: int = -1


class OffsetTracker:
    """Per partition: which offsets run, and how far the consumer may commit."""

    def __init__(self) -> None:
        self._partitions: dict[PartitionKey, _Partition] = {}

    def started(self, key: PartitionKey, offset: int) -> None:
        self._partitions.setdefault(key, _Partition()).running.add(offset)

    def finished(self, key: PartitionKey, offset: int) -> None:
        partition = self._partitions.get(key)
        if partition is None:
            return  # revoked meanwhile: the new owner will run it again
        partition.running.discard(offset)
        partition.highest_done = max(partition.highest_done, offset)

    def hold(self, key: PartitionKey, offset: int) -> None:
        """Stopped without being done: frees its slot, keeps the position below it."""
        partition = self._partitions.get(key)
        if partition is not None and offset in partition.running:
            partition.running.discard(offset)
            partition.held.add(offset)

    def forget(self, key: PartitionKey) -> None:
        self._partitions.pop(key, None)

    @property
    def running(self) -> int:
        return sum(len(p.running) for p in self._partitions.values())

    def commit_positions(self) -> dict[PartitionKey, int]:
        """The next offset to consume, per partition whose position moved since last asked."""
        moved = {}
        for key, partition in self._partitions.items():
            blocking = partition.running | partition.held
            position = min(blocking) if blocking else partition.highest_done + 1
            if position > partition.committed and position > 0:
                partition.committed = position
                moved[key] = position
        return moved

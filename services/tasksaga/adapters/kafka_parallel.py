"""A consumer that runs up to N messages at once, across and within partitions.

Step commands of one parallel group share a task and may share a partition; a consumer that
handles one message at a time would run them one after another. Here a pool of threads runs
them concurrently while the consumer keeps polling (paused when the pool is full), so long
steps never exceed Kafka's poll interval either.

Offsets complete out of order, so each partition's committed position is the lowest offset
still running (``OffsetTracker``): a crash re-delivers whatever had not finished below it,
never skips it. Re-delivered commands are re-run; their results carry the same message id, so
the orchestrator's inbox drops the duplicates.
"""

from __future__ import annotations

import logging
import queue
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from confluent_kafka import KafkaException, Message, TopicPartition

from tasksaga.adapters.kafka_bus import ConsumerLoop

log = logging.getLogger(__name__)

PartitionKey = tuple[str, int]


@dataclass
class _Partition:
    running: set[int] = field(default_factory=set)
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

    def forget(self, key: PartitionKey) -> None:
        self._partitions.pop(key, None)

    @property
    def running(self) -> int:
        return sum(len(p.running) for p in self._partitions.values())

    def commit_positions(self) -> dict[PartitionKey, int]:
        """The next offset to consume, per partition whose position moved since last asked."""
        moved = {}
        for key, partition in self._partitions.items():
            position = min(partition.running) if partition.running else partition.highest_done + 1
            if position > partition.committed and position > 0:
                partition.committed = position
                moved[key] = position
        return moved


class ParallelConsumerLoop(ConsumerLoop):
    def __init__(self, *args: object, concurrency: int, shutdown_seconds: float = 20.0,
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._concurrency = concurrency
        self._shutdown_seconds = shutdown_seconds
        self._tracker = OffsetTracker()
        self._finished: queue.SimpleQueue[tuple[PartitionKey, int, bool]] = queue.SimpleQueue()
        self._paused: set[PartitionKey] = set()

    def run(self) -> None:
        self.consumer.subscribe(self.settings.topics, on_revoke=self._on_revoke)
        futures = set()
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="step") as pool:
            try:
                while not self._stop.is_set():
                    self._collect_finished()
                    self._throttle()
                    message = self.poll(0.2)
                    if message is None:
                        continue
                    key = (message.topic() or "", message.partition() or 0)
                    self._tracker.started(key, message.offset() or 0)
                    futures.add(pool.submit(self._run_one, key, message))
                    futures = {f for f in futures if not f.done()}
            finally:
                # Let running steps finish (their results are worth sending), then commit.
                wait(futures, timeout=self._shutdown_seconds)
                self._collect_finished()
                self.consumer.close()

    def _run_one(self, key: PartitionKey, message: Message) -> None:
        done = False
        try:
            done = self.handle(message)
        except Exception:
            log.exception("unexpected failure handling %s@%s", key, message.offset())
        finally:
            self._finished.put((key, message.offset() or 0, done))

    def _collect_finished(self) -> None:
        while True:
            try:
                key, offset, done = self._finished.get_nowait()
            except queue.Empty:
                break
            if done:
                self._tracker.finished(key, offset)
        positions = self._tracker.commit_positions()
        if positions:
            try:
                self.consumer.store_offsets(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()]
                )
            except KafkaException as error:  # a partition revoked in between: harmless
                log.info("could not store offsets %s: %s", positions, error)

    PAUSE_AFTER_S = 5.0

    def _throttle(self) -> None:
        """With a full pool, wait for a free slot; pause the partitions only when the pool
        stays full for PAUSE_AFTER_S (long steps), so the consumer can keep polling within
        Kafka's poll interval. Pausing is the exception because librdkafka drops its
        prefetched messages on pause/resume and backs off about a second before fetching."""
        waited_until = time.monotonic() + self.PAUSE_AFTER_S
        while (self._tracker.running >= self._concurrency and not self._paused
               and time.monotonic() < waited_until and not self._stop.is_set()):
            try:
                key, offset, done = self._finished.get(timeout=0.1)
            except queue.Empty:
                continue
            if done:
                self._tracker.finished(key, offset)
        full = self._tracker.running >= self._concurrency
        if full:
            assignment = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
            newly = assignment - self._paused
            if newly:
                self.consumer.pause([TopicPartition(t, p) for t, p in newly])
                self._paused |= newly
        elif self._paused:
            self.consumer.resume([TopicPartition(t, p) for t, p in self._paused])
            self._paused = set()

    def _on_revoke(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        self._collect_finished()
        for partition in partitions:
            self._tracker.forget((partition.topic, partition.partition))
            self._paused.discard((partition.topic, partition.partition))

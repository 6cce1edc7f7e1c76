"""A failed offset commit of the parallel consumer is sent again, and never sends a partition's
position backwards (no broker needed: the loop's commit bookkeeping is driven directly)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError, TopicPartition

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import ConsumerSettings, KafkaProducer
from tasksaga.adapters.kafka_parallel import ParallelConsumerLoop

P = ("step-commands.q", 0)
FAILED = KafkaError(KafkaError.ILLEGAL_GENERATION)


@pytest.fixture
def loop() -> Iterator[ParallelConsumerLoop]:
    # Nothing listens there: the clients are built but never used.
    dead_letters = KafkaProducer("127.0.0.1:1", "unit-dlq")
    loop = ParallelConsumerLoop(
        ConsumerSettings(bootstrap="127.0.0.1:1", group_id="unit", topics=[P[0]],
                         dead_letter_topic="dlq"),
        AvroCodec(), lambda _envelope, _lease: True, dead_letters, threading.Event(),
        lambda: 0, concurrency=2)
    loop.assignment = frozenset({P})
    yield loop
    loop.consumer.close()
    dead_letters.close(timeout=0)


def test_a_failed_commit_is_sent_again_with_the_next_ones(loop: ParallelConsumerLoop) -> None:
    loop._sent[P] = 7
    loop._on_commit(FAILED, [TopicPartition(*P, 7)])
    assert loop._pending == {P: 7}  # an idle partition keeps no stale committed position


def test_a_failed_commit_overtaken_by_a_later_one_is_not_sent_again(
    loop: ParallelConsumerLoop,
) -> None:
    loop._sent[P] = 9  # sent after 7 was: re-sending 7 would move the position back
    loop._on_commit(FAILED, [TopicPartition(*P, 7)])
    assert loop._pending == {}


def test_a_failed_commit_of_a_partition_given_up_is_dropped(loop: ParallelConsumerLoop) -> None:
    loop.assignment = frozenset()
    loop._sent[P] = 7
    loop._on_commit(FAILED, [TopicPartition(*P, 7)])
    assert loop._pending == {}


def test_a_successful_commit_queues_nothing(loop: ParallelConsumerLoop) -> None:
    loop._sent[P] = 7
    loop._on_commit(None, [TopicPartition(*P, 7)])
    assert loop._pending == {}


def test_one_commit_is_in_flight_at_a_time(loop: ParallelConsumerLoop) -> None:
    """Commits queued behind a slow group coordinator held back the member's heartbeats
    until it was evicted (R3): positions that move meanwhile wait for the answer."""
    loop._pending = {P: 5}
    loop._send_commits()  # sent (the client refuses it here, unassigned: logged only)
    assert loop._pending == {}
    loop._pending = {P: 6}
    loop._send_commits()
    assert loop._pending == {P: 6}  # waits for the answer to the first
    loop._on_commit(None, [TopicPartition(*P, 5)])
    loop._send_commits()
    assert loop._pending == {}
    assert loop._sent == {P: 6}


class RecordingConsumer:
    """The one call a shutdown commit makes."""

    def __init__(self) -> None:
        self.commits: list[tuple[list[tuple[str, int, int]], bool]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append(([(tp.topic, tp.partition, tp.offset) for tp in offsets],
                             asynchronous))


def test_what_finished_during_the_drain_is_committed_although_a_commit_is_unanswered(
    loop: ParallelConsumerLoop,
) -> None:
    """SIGTERM in a rolling restart: the steps in hand finish while nothing polls, so the
    commit sent just before is never answered; their positions are committed all the same,
    or the partitions' next owner would run them again."""
    loop._sent[P] = 5
    loop._commit_sent_at = time.monotonic()  # sent just before the stop: unanswered
    loop._pending = {P: 8}  # the drained steps' position
    loop._send_commits()
    assert loop._pending == {P: 8}  # the ordinary path waits for the answer
    real, recorder = loop.consumer, RecordingConsumer()
    loop.consumer = recorder  # type: ignore[assignment]
    try:
        loop._commit_at_shutdown()
    finally:
        loop.consumer = real
    assert recorder.commits == [([(*P, 8)], False)]  # synchronous: close() commits nothing
    assert loop._pending == {}


def test_the_shutdown_commit_skips_partitions_given_up(loop: ParallelConsumerLoop) -> None:
    loop._pending = {P: 8, ("step-commands.q", 1): 3}
    real, recorder = loop.consumer, RecordingConsumer()
    loop.consumer = recorder  # type: ignore[assignment]
    try:
        loop._commit_at_shutdown()
        loop._pending = {("step-commands.q", 1): 4}
        loop._commit_at_shutdown()
    finally:
        loop.consumer = real
    # Partition 1 is not this loop's; P's latest position is committed again (it may have
    # been the unanswered one), never an older one.
    assert recorder.commits == [([(*P, 8)], False), ([(*P, 8)], False)]


def test_giving_a_partition_up_commits_again_the_position_last_sent(
    loop: ParallelConsumerLoop,
) -> None:
    """An asynchronous commit sent as a rebalance began is refused, and its answer comes after
    the revoke callback: the revoke commits the latest position sent, synchronously, or the
    partition's new owner starts below it and runs finished steps again."""
    other = ("step-commands.q", 1)
    loop.assignment = frozenset({P, other})
    loop._sent = {P: 5, other: 3}
    loop._commit_sent_at = time.monotonic()  # in flight: it may still fail
    loop._pending = {other: 4}
    real, recorder = loop.consumer, RecordingConsumer()
    loop.consumer = recorder  # type: ignore[assignment]
    try:
        loop._on_revoke(recorder, [TopicPartition(*P), TopicPartition(*other)])
    finally:
        loop.consumer = real
    assert len(recorder.commits) == 1
    offsets, asynchronous = recorder.commits[0]
    assert sorted(offsets) == [(*P, 5), (*other, 4)] and not asynchronous
    assert loop._pending == {} and loop._sent == {}


def test_the_revoke_after_a_shutdown_commit_never_moves_a_position_back(
    loop: ParallelConsumerLoop,
) -> None:
    """close() runs the revoke callback after the shutdown commit: it commits the shutdown's
    positions again, not the older ones sent before (the new owner would re-run steps)."""
    loop._sent[P] = 5
    loop._pending = {P: 8}
    real, recorder = loop.consumer, RecordingConsumer()
    loop.consumer = recorder  # type: ignore[assignment]
    loop._stop.set()  # stopping: the revoke does not wait for running steps
    try:
        loop._commit_at_shutdown()
        loop._on_revoke(recorder, [TopicPartition(*P)])
    finally:
        loop.consumer = real
    assert recorder.commits == [([(*P, 8)], False), ([(*P, 8)], False)]

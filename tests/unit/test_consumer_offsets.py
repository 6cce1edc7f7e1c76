"""A consumer loop stores offsets only for partitions it still owns: a rebalance served by the
poll that fetched a batch may have revoked some, and storing theirs raised _STATE and stopped
the orchestrator (R5 of the chaos suite)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import ConsumerLoop, ConsumerSettings, KafkaProducer

OWNED, REVOKED = ("task-commands", 0), ("task-commands", 1)


class RevokingConsumer:
    """The client's call the loop makes to store positions; refuses revoked ones."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, int, int]] = []

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        if any((tp.topic, tp.partition) != OWNED for tp in offsets):
            raise KafkaException(KafkaError(KafkaError._STATE))
        self.stored += [(tp.topic, tp.partition, tp.offset) for tp in offsets]


@pytest.fixture
def loop() -> Iterator[ConsumerLoop]:
    dead_letters = KafkaProducer("127.0.0.1:1", "unit-dlq")  # nothing listens: never used
    loop = ConsumerLoop(
        ConsumerSettings(bootstrap="127.0.0.1:1", group_id="unit", topics=[OWNED[0]],
                         dead_letter_topic="dlq"),
        AvroCodec(), lambda _envelope: None, dead_letters, threading.Event(), lambda: 0)
    real = loop.consumer
    loop.consumer = RevokingConsumer()  # type: ignore[assignment]
    # As the rebalance callbacks left it: both partitions assigned, then one revoked.
    loop._on_assign(loop.consumer, [TopicPartition(*OWNED), TopicPartition(*REVOKED)])
    loop._on_revoke(loop.consumer, [TopicPartition(*REVOKED)])
    yield loop
    real.close()
    dead_letters.close(timeout=0)


def test_offsets_of_revoked_partitions_are_not_stored(loop: ConsumerLoop) -> None:
    loop._store({OWNED: 11, REVOKED: 7})
    assert loop.consumer.stored == [(*OWNED, 11)]  # type: ignore[attr-defined]


def test_a_partition_revoked_between_the_check_and_the_store_is_no_error(
    loop: ConsumerLoop,
) -> None:
    consumer: RevokingConsumer = loop.consumer  # type: ignore[assignment]
    loop._on_assign(consumer, [TopicPartition(*REVOKED)])  # the loop still thinks it owns it
    loop._store({REVOKED: 7})  # the client says _STATE: logged, not raised
    assert consumer.stored == []

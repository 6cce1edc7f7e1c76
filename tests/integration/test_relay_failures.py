"""The outbox relay holds no transaction while records travel to Kafka, and one record the
broker refuses for good (over its size limit) is dead-lettered instead of halting every saga."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
from confluent_kafka import KafkaError
from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import Delivery, DeliveryFailed, Headers, KafkaProducer
from tasksaga.adapters.outbox_relay import OutboxRelay
from tasksaga.adapters.pg_store import OutboxRecord, PostgresEventStore, open_pool
from tasksaga.adapters.topics import ensure_topics
from tasksaga.adapters.wire import DeadLetter, Topics
from tests.integration.relay_support import drain, read_all

TOPIC_LIMIT = 50_000  # the topic's max.message.bytes


@pytest.fixture
def limited_topic(kafka_bootstrap: str, topic_prefix: str) -> str:
    """A topic that refuses records over TOPIC_LIMIT, and the dead-letter topic beside it."""
    topic = f"{topic_prefix}.relay-limited"
    ensure_topics(kafka_bootstrap, [topic], partitions=1,
                  config={"max.message.bytes": str(TOPIC_LIMIT)})
    ensure_topics(kafka_bootstrap, [Topics(topic_prefix).dead_letter], partitions=1)
    return topic


def test_an_oversized_record_is_dead_lettered_and_the_others_go_on(
    kafka_bootstrap: str, pool: ConnectionPool, codec: AvroCodec, store: PostgresEventStore,
    topic_prefix: str, limited_topic: str,
) -> None:
    topics, topic = Topics(topic_prefix), limited_topic
    too_large = os.urandom(4 * TOPIC_LIMIT)  # random: lz4 cannot shrink it under the limit
    with store.transaction() as tx:
        tx.enqueue([OutboxRecord(topic, b"k", b"before"),
                    OutboxRecord(topic, b"k", too_large),
                    OutboxRecord(topic, b"k", b"after")])
    drain(OutboxRelay(pool, KafkaProducer(kafka_bootstrap, "relay-size"), topic_prefix, codec))

    assert read_all(kafka_bootstrap, topic, expected=2) == [b"before", b"after"]
    letters = [codec.decode(v) for v in read_all(kafka_bootstrap, topics.dead_letter, 1)]
    assert len(letters) == 1
    letter = letters[0].payload
    assert isinstance(letter, DeadLetter)
    assert letter.source_topic == topic and letter.key == b"k"
    assert "too large" in letter.reason.lower() or "size" in letter.reason.lower(), letter.reason
    assert letter.value == too_large, "the dead letter carries the original bytes"
    with pool.connection() as conn:
        left = conn.execute("SELECT count(*) FROM outbox WHERE topic LIKE %s",
                            (f"{topic_prefix}.%",)).fetchone()
        kept = conn.execute("SELECT value, reason FROM outbox_dead_letters WHERE topic = %s",
                            (topic,)).fetchall()
    assert left is not None and left[0] == 0
    assert [bytes(r[0]) for r in kept] == [too_large]


def test_an_oversized_dead_letter_value_is_cut_and_kept_whole_in_the_table(
    kafka_bootstrap: str, pool: ConnectionPool, codec: AvroCodec, store: PostgresEventStore,
    topic_prefix: str, limited_topic: str,
) -> None:
    topics, topic = Topics(topic_prefix), limited_topic
    too_large = os.urandom(4 * TOPIC_LIMIT)
    with store.transaction() as tx:
        tx.enqueue([OutboxRecord(topic, b"k", too_large)])
    drain(OutboxRelay(pool, KafkaProducer(kafka_bootstrap, "relay-cut"), topic_prefix, codec,
                      dead_letter_value_bytes=1000))
    letter = codec.decode(read_all(kafka_bootstrap, topics.dead_letter, 1)[0]).payload
    assert isinstance(letter, DeadLetter)
    assert letter.value == too_large[:1000]
    assert "outbox_dead_letters" in letter.reason


class WatchedProducer(KafkaProducer):
    """Records, while the records travel, whether the relay's session has a transaction open."""

    def __init__(self, bootstrap: str, database_url: str, application_name: str) -> None:
        super().__init__(bootstrap, f"relay-watch-{uuid.uuid4().hex[:6]}")
        self._database_url = database_url
        self._application_name = application_name
        self.states: list[str] = []

    def flush(self, timeout: float = 30.0, raise_on_error: bool = True) -> list[Delivery]:
        with psycopg.connect(self._database_url, autocommit=True) as conn:
            self.states += [str(r[0]) for r in conn.execute(
                "SELECT state FROM pg_stat_activity WHERE application_name = %s",
                (self._application_name,))]
        return super().flush(timeout, raise_on_error)


def test_no_transaction_is_open_while_records_travel_to_the_broker(
    kafka_bootstrap: str, database_url: str, codec: AvroCodec, store: PostgresEventStore,
    topic_prefix: str,
) -> None:
    topic = f"{topic_prefix}.relay-tx"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    name = f"relay-{uuid.uuid4().hex[:8]}"
    relay_pool = open_pool(database_url, max_size=1, name=name)
    try:
        with store.transaction() as tx:
            tx.enqueue([OutboxRecord(topic, b"k", b"v")])
        producer = WatchedProducer(kafka_bootstrap, database_url, name)
        drain(OutboxRelay(relay_pool, producer, topic_prefix, codec))
    finally:
        relay_pool.close()
    assert producer.states, "the relay's session was watched while it published"
    assert all(state == "idle" for state in producer.states), producer.states
    assert read_all(kafka_bootstrap, topic, expected=1) == [b"v"]


class FailsOnce(KafkaProducer):
    """The first record with value ``fail`` is reported not delivered (a timeout), once."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, f"relay-once-{uuid.uuid4().hex[:6]}")
        self.failed = False

    def produce(self, topic: str, key: bytes | None, value: bytes,
                headers: Headers = ()) -> Delivery:
        if value == b"fail" and not self.failed:
            self.failed = True
            delivery = Delivery(topic)
            delivery._refuse(DeliveryFailed(topic, "message timed out",
                                            KafkaError._MSG_TIMED_OUT))
            return delivery
        return super().produce(topic, key, value, headers)


def test_a_record_that_may_pass_is_sent_again_with_the_later_records_of_its_key(
    kafka_bootstrap: str, pool: ConnectionPool, codec: AvroCodec, store: PostgresEventStore,
    topic_prefix: str,
) -> None:
    """Per-key order: after a transient failure of A1, the acknowledged A2 is kept and sent
    again after A1, so key A's last copies arrive in order; key B is not held back."""
    topic = f"{topic_prefix}.relay-order"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    with store.transaction() as tx:
        tx.enqueue([OutboxRecord(topic, b"A", b"fail"), OutboxRecord(topic, b"A", b"A2"),
                    OutboxRecord(topic, b"B", b"B1")])
    relay = OutboxRelay(pool, FailsOnce(kafka_bootstrap), topic_prefix, codec)
    assert relay.publish_pending() == 1, "only B1 is settled in the first round"
    with pool.connection() as conn:
        left = [bytes(r[0]) for r in conn.execute(
            "SELECT value FROM outbox WHERE topic = %s ORDER BY id", (topic,))]
    assert left == [b"fail", b"A2"]
    drain(relay)
    received = read_all(kafka_bootstrap, topic, expected=4)
    assert received == [b"A2", b"B1", b"fail", b"A2"]

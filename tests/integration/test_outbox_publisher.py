"""Records sent right after their commit: the publisher deletes what the broker acknowledged,
leaves what it did not to the relay, and the relay sweeps only what is older than its age."""

from __future__ import annotations

import time

from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import KafkaProducer
from tasksaga.adapters.outbox_publisher import OutboxPublisher
from tasksaga.adapters.outbox_relay import OutboxRelay
from tasksaga.adapters.pg_store import OutboxRecord, PostgresEventStore
from tasksaga.adapters.topics import ensure_topics
from tasksaga.adapters.wire import Topics
from tasksaga.core.shards import DEFAULT_SHARD
from tests.integration.conftest import new_task_id, submitted
from tests.integration.relay_support import drain, read_all


def _rows(pool: ConnectionPool, topic: str) -> int:
    with pool.connection() as conn:
        row = conn.execute("SELECT count(*) FROM outbox WHERE topic = %s", (topic,)).fetchone()
    assert row is not None
    return int(row[0])


def _settle_all(publisher: OutboxPublisher, expected: int, timeout_s: float = 30.0) -> int:
    settled, deadline = 0, time.monotonic() + timeout_s
    while settled < expected and time.monotonic() < deadline:
        settled += publisher.settle()
        time.sleep(0.05)
    return settled


def test_committed_records_are_sent_at_once_and_their_rows_deleted_once_acknowledged(
    kafka_bootstrap: str, pool: ConnectionPool, codec: AvroCodec, store: PostgresEventStore,
    topic_prefix: str,
) -> None:
    topic = f"{topic_prefix}.publisher-test"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    tasks = [new_task_id() for _ in range(3)]
    with store.transaction() as tx:
        tx.enqueue([OutboxRecord(topic, b"k", codec.encode(submitted(t))) for t in tasks])
    assert [record.topic for _, record in tx.enqueued] == [topic] * 3  # ids known at commit
    assert _rows(pool, topic) == 3

    publisher = OutboxPublisher(KafkaProducer(kafka_bootstrap, "publisher"),
                                {DEFAULT_SHARD: pool})
    publisher.publish(DEFAULT_SHARD, tx.enqueued)
    assert _settle_all(publisher, 3) == 3

    received = [codec.decode(v).task_id for v in read_all(kafka_bootstrap, topic, expected=3)]
    assert received == tasks  # in commit order, each once
    assert _rows(pool, topic) == 0


def test_closing_waits_for_the_last_reports_and_deletes_their_rows(
    kafka_bootstrap: str, pool: ConnectionPool, codec: AvroCodec, store: PostgresEventStore,
    topic_prefix: str,
) -> None:
    """A drain's last batch publishes after its commit, just before the process ends: its rows
    are deleted at close, so the next start's relay sends nothing again."""
    topic = f"{topic_prefix}.publisher-close"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    tasks = [new_task_id() for _ in range(20)]
    with store.transaction() as tx:
        tx.enqueue([OutboxRecord(topic, b"k", codec.encode(submitted(t))) for t in tasks])
    publisher = OutboxPublisher(KafkaProducer(kafka_bootstrap, "publisher-close"),
                                {DEFAULT_SHARD: pool})
    publisher.publish(DEFAULT_SHARD, tx.enqueued)
    assert publisher.close() == 20  # nothing was acknowledged yet when it began
    assert _rows(pool, topic) == 0
    assert len(read_all(kafka_bootstrap, topic, expected=20)) == 20


def test_a_record_the_broker_refuses_stays_for_the_relay_which_sweeps_only_old_rows(
    kafka_bootstrap: str, pool: ConnectionPool, codec: AvroCodec, store: PostgresEventStore,
    topic_prefix: str,
) -> None:
    topic = f"{topic_prefix}.publisher-sweep"
    ensure_topics(kafka_bootstrap, [topic, Topics(topic_prefix).dead_letter], partitions=1)
    task = new_task_id()
    oversized = OutboxRecord(topic, b"k", b"x" * 2_000_000)  # over the broker's 1 MiB limit
    with store.transaction() as tx:
        tx.enqueue([oversized])
    publisher = OutboxPublisher(KafkaProducer(kafka_bootstrap, "publisher-refused"),
                                {DEFAULT_SHARD: pool})
    publisher.publish(DEFAULT_SHARD, tx.enqueued)
    deadline = time.monotonic() + 30
    while publisher.failed == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert publisher.failed == 1 and publisher.settle() == 0
    assert _rows(pool, topic) == 1  # not lost: the relay's to send or dead-letter

    relay = OutboxRelay(pool, KafkaProducer(kafka_bootstrap, "sweeper"), topic_prefix, codec,
                        sweep_age_s=3600.0)
    drain(relay)  # its first rounds take every row, whatever its age: it dead-letters this one
    assert _rows(pool, topic) == 0

    with store.transaction() as tx:  # a young row, as a live publisher's in flight
        tx.enqueue([OutboxRecord(topic, b"k", codec.encode(submitted(task)))])
    assert relay.publish_pending() == 0 and _rows(pool, topic) == 1  # younger than its age
    with pool.connection() as conn:
        conn.execute("UPDATE outbox SET created_at = now() - interval '2 hours'"
                     " WHERE topic = %s", (topic,))
    assert relay.publish_pending() == 1 and _rows(pool, topic) == 0
    assert [codec.decode(v).task_id for v in read_all(kafka_bootstrap, topic, expected=1)] == [
        task]


def _take_all(publisher: OutboxPublisher, expected: int, timeout_s: float = 30.0) -> list[int]:
    taken: list[int] = []
    deadline = time.monotonic() + timeout_s
    while len(taken) < expected and time.monotonic() < deadline:
        taken += publisher.take_acknowledged(DEFAULT_SHARD)
        time.sleep(0.02)
    return taken


def test_the_next_transaction_deletes_the_acknowledged_rows_and_a_rollback_gives_them_back(
    kafka_bootstrap: str, pool: ConnectionPool, codec: AvroCodec, store: PostgresEventStore,
    topic_prefix: str,
) -> None:
    topic = f"{topic_prefix}.publisher-ride"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    with store.transaction() as tx:
        tx.enqueue([OutboxRecord(topic, b"k", codec.encode(submitted(new_task_id())))
                    for _ in range(2)])
    publisher = OutboxPublisher(KafkaProducer(kafka_bootstrap, "publisher-ride"),
                                {DEFAULT_SHARD: pool})
    publisher.publish(DEFAULT_SHARD, tx.enqueued)
    acknowledged = _take_all(publisher, 2)
    assert sorted(acknowledged) == sorted(row_id for row_id, _ in tx.enqueued)

    try:  # a batch that rolls back deletes nothing and hands its rows back
        with store.transaction() as failing:
            failing.delete_published(acknowledged)
            raise RuntimeError("the batch fails")
    except RuntimeError:
        publisher.give_back(DEFAULT_SHARD, acknowledged)
    assert _rows(pool, topic) == 2
    again = publisher.take_acknowledged(DEFAULT_SHARD)
    assert sorted(again) == sorted(acknowledged)
    with store.transaction() as riding:  # the next one deletes them with its own writes
        riding.delete_published(again)
    assert _rows(pool, topic) == 0 and publisher.settle() == 0  # nothing left to settle

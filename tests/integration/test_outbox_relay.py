"""The outbox: records reach Kafka only after commit, and a crash before the delete re-sends."""

from __future__ import annotations

import contextlib

from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import Delivery, KafkaProducer
from tasksaga.adapters.outbox_relay import OutboxRelay
from tasksaga.adapters.pg_store import OutboxRecord, PostgresEventStore
from tasksaga.adapters.topics import ensure_topics
from tests.integration.conftest import new_task_id, submitted
from tests.integration.relay_support import drain, read_all


class CrashAfterFlush(KafkaProducer):
    """Acknowledged by the broker, then the process 'dies' before deleting the rows."""

    def flush(self, timeout: float = 30.0, raise_on_error: bool = True) -> list[Delivery]:
        super().flush(timeout, raise_on_error)
        raise SystemExit("crash between publish and delete")


def test_rolled_back_records_are_never_published_and_a_crash_resends(
    kafka_bootstrap: str, pool: ConnectionPool, codec: AvroCodec, store: PostgresEventStore,
    topic_prefix: str,
) -> None:
    def relay(producer: KafkaProducer) -> OutboxRelay:
        return OutboxRelay(pool, producer, topic_prefix, codec)

    topic = f"{topic_prefix}.outbox-test"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    drain(relay(KafkaProducer(kafka_bootstrap, "relay-pre")))
    committed, rolled_back = new_task_id(), new_task_id()
    # Another deployment's record, to a topic that does not exist: not ours to publish, and
    # it must not block ours.
    foreign = OutboxRecord(f"other{topic_prefix}.missing-topic", b"k", b"x")
    with store.transaction() as tx:
        tx.enqueue([foreign])

    with store.transaction() as tx:
        tx.enqueue([OutboxRecord(topic, b"k", codec.encode(submitted(committed)))])
    try:
        with store.transaction() as tx:
            tx.enqueue([OutboxRecord(topic, b"k", codec.encode(submitted(rolled_back)))])
            raise RuntimeError("the orchestrator fails before commit")
    except RuntimeError:
        pass

    crashing = relay(CrashAfterFlush(kafka_bootstrap, "relay-crash"))
    with contextlib.suppress(SystemExit):
        crashing.publish_pending()
    drain(relay(KafkaProducer(kafka_bootstrap, "relay-restarted")))

    received = [codec.decode(v) for v in read_all(kafka_bootstrap, topic, expected=2)]
    task_ids = [e.task_id for e in received]
    assert task_ids == [committed, committed], "at least once: re-sent after the crash"
    assert rolled_back not in task_ids
    with pool.connection() as conn:
        left = conn.execute("SELECT count(*) FROM outbox WHERE topic = %s", (topic,)).fetchone()
    assert left is not None and left[0] == 0
    with pool.connection() as conn:
        conn.execute("DELETE FROM outbox WHERE topic = %s", (foreign.topic,))

"""The real adapters pass each port's contract suite: the Postgres event store, the Kafka
producer, MinIO and the system clock (the in-memory adapters pass the same suites in
tests/unit/test_port_contracts.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer
from psycopg_pool import ConnectionPool

from tasksaga.adapters import clock as system_clock
from tasksaga.adapters.artifact_refs import PgArtifactRefs
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_producer import KafkaProducer
from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga.adapters.pg_store import PostgresEventStore
from tasksaga.adapters.topics import ensure_topics
from tasksaga.core.ports import ArtifactRefs, Bus, Clock, EventStore, ObjectStore, OutboxRecord
from tests.integration.shard_support import two_shard_store
from tests.port_contracts.artifact_refs import ArtifactRefsContract
from tests.port_contracts.bus import BusContract, Received
from tests.port_contracts.clock import ClockContract
from tests.port_contracts.event_store import EventStoreContract, ShardedEventStoreContract
from tests.port_contracts.object_store import ObjectStoreContract

pytestmark = pytest.mark.integration


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, pool: ConnectionPool, codec: AvroCodec) -> Iterator[EventStore]:
        self.pool = pool
        store: EventStore = PostgresEventStore(pool, codec)  # mypy: it satisfies the port
        yield store

    def outbox(self, store: EventStore, topic: str) -> list[OutboxRecord]:
        # Another deployment's relay publishes only its own topics' records: these stay.
        with self.pool.connection() as conn:
            rows = conn.execute("DELETE FROM outbox WHERE topic = %s RETURNING id, key, value,"
                                " headers", (topic,)).fetchall()
        return [OutboxRecord(topic, None if key is None else bytes(key), bytes(value),
                             [(k, v.encode("latin-1")) for k, v in
                              (headers if isinstance(headers, list) else json.loads(headers))])
                for _, key, value, headers in sorted(rows, key=lambda row: row[0])]


class TestShardedPostgresEventStore(ShardedEventStoreContract):
    """Two shards on two real PostgreSQL clusters (tests/integration/shard_support.py)."""

    @pytest.fixture
    def store(self, database_url: str, second_pg_url: str,
              codec: AvroCodec) -> Iterator[EventStore]:
        with two_shard_store(database_url, second_pg_url, codec) as store:
            self.sharded = store
            yield store

    def outbox(self, store: EventStore, topic: str) -> list[OutboxRecord]:
        records: list[OutboxRecord] = []
        for shard in self.sharded.shard_names():
            with self.sharded.pool(shard).connection() as conn:
                rows = conn.execute("DELETE FROM outbox WHERE topic = %s RETURNING id, key,"
                                    " value, headers", (topic,)).fetchall()
            records += [OutboxRecord(topic, None if key is None else bytes(key), bytes(value),
                                     [(k, v.encode("latin-1")) for k, v in headers])
                        for _, key, value, headers in sorted(rows, key=lambda row: row[0])]
        return records


class TestKafkaBus(BusContract):
    @pytest.fixture
    def bus(self, kafka_bootstrap: str, topic_prefix: str) -> Iterator[Bus]:
        self.bootstrap, self.prefix, self.count = kafka_bootstrap, topic_prefix, 0
        producer = KafkaProducer(kafka_bootstrap, "port-contract")
        bus: Bus = producer  # mypy: it satisfies the port
        yield bus
        producer.close()

    def new_topic(self) -> str:
        self.count += 1
        topic = f"{self.prefix}.contract-{self.count}"
        ensure_topics(self.bootstrap, [topic], partitions=1)
        return topic

    def read(self, bus: Bus, topic: str, expected: int) -> list[Received]:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"g-{topic}",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        received: list[Received] = []
        try:
            for _ in range(60):  # 30 s at most; then whatever arrived is compared
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    value = message.value()
                    assert value is not None
                    raw = message.headers() or []
                    pairs = list(raw.items()) if isinstance(raw, dict) else raw
                    headers = [(k, v) for k, v in pairs if isinstance(v, bytes)]
                    received.append((message.key(), value, headers))
                if len(received) >= expected and message is None:
                    break
        finally:
            consumer.close()
        return received


class TestMinioObjectStore(ObjectStoreContract):
    @pytest.fixture
    def objects(self, stack_env: dict[str, str]) -> ObjectStore:
        objects: ObjectStore = MinioObjectStore(stack_env["TASKSAGA_S3_ENDPOINT"],
                                                stack_env["TASKSAGA_S3_ACCESS_KEY"],
                                                stack_env["TASKSAGA_S3_SECRET_KEY"])
        return objects


class TestSystemClock(ClockContract):
    @pytest.fixture
    def clock(self) -> Clock:
        clock: Clock = system_clock  # the module is the adapter; mypy checks it fits the port
        return clock


class TestPgArtifactRefs(ArtifactRefsContract):
    @pytest.fixture
    def refs(self, schema_pool: ConnectionPool) -> ArtifactRefs:
        return PgArtifactRefs(schema_pool)

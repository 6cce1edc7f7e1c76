"""The whole notifier service: task events in from Kafka, LISTEN/NOTIFY-woken sender threads
POSTing to a local receiver, delivery records out to Kafka.

Its own Postgres schema (``schema_url``, see conftest.py) and topic prefix keep another
notifier sharing the stack out; waits are bounded polls.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from psycopg_pool import ConnectionPool

from localrun import local_payload_cipher, local_payload_keys
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import KafkaProducer
from tasksaga.adapters.lifecycle import ServiceStop
from tasksaga.adapters.topics import ensure_topics
from tasksaga.adapters.wire import Topics, WebhookDelivery
from tasksaga.core import events as ev
from tasksaga.notifier import main as notifier_main
from tasksaga.notifier.settings import NotifierSettings
from tests.integration.notifier_support import (
    DEADLINE_S,
    LOCAL_RECEIVERS,
    SECRET,
    Receiver,
    assert_signed,
    attempts,
    event,
    pending,
    submitted,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def topics(kafka_bootstrap: str, topic_prefix: str) -> Iterator[Topics]:
    topics = Topics(topic_prefix)
    names = [topics.task_events, topics.webhook_deliveries, topics.dead_letter]
    ensure_topics(kafka_bootstrap, names, partitions=2)
    yield topics
    for future in AdminClient({"bootstrap.servers": kafka_bootstrap}).delete_topics(
        names, operation_timeout=30
    ).values():
        with contextlib.suppress(Exception):  # cleanup only; a leftover topic harms no one
            future.result(timeout=30)


def read_delivery_records(
    bootstrap: str, topic: str, task_id: str, codec: AvroCodec, count: int
) -> list[WebhookDelivery]:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"{topic}-reader-{uuid.uuid4().hex[:6]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    found: list[WebhookDelivery] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while len(found) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            envelope = codec.decode(message.value())
            if envelope.task_id == task_id and isinstance(envelope.payload, WebhookDelivery):
                found.append(envelope.payload)
    finally:
        consumer.close()
    return found


def test_the_service_delivers_events_from_kafka(
    schema_url: str, schema_pool: ConnectionPool, kafka_bootstrap: str, topics: Topics,
    receiver_factory: Callable[[int], tuple[Receiver, str]],
) -> None:
    receiver, url = receiver_factory(2)
    codec = AvroCodec(cipher=local_payload_cipher())
    settings = NotifierSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=schema_url,
        payload_keys=local_payload_keys(),
        topic_prefix=topics.prefix, topic_partitions=2, webhook_secret=SECRET,
        webhook_max_attempts=5, webhook_timeout_s=10.0,
        webhook_backoff_base_s=0.02, webhook_backoff_cap_s=0.1, webhook_senders=2,
        url_allowlist=LOCAL_RECEIVERS,
    )
    stop = ServiceStop()
    failures: list[BaseException] = []

    def run_service() -> None:
        try:
            notifier_main.run(settings, stop)
        except BaseException as error:
            failures.append(error)

    service = threading.Thread(target=run_service, name="notifier-under-test")
    service.start()
    task_id = f"task-{uuid.uuid4()}"
    progress, done = f"{task_id}:3", f"{task_id}:4"
    try:
        producer = KafkaProducer(kafka_bootstrap, "notifier-test")
        step_completed = event(task_id, 3, ev.StepCompleted("zip", 1, "{}", 1))
        for envelope in (
            submitted(task_id, 1, url),
            event(task_id, 2, ev.StepDispatched("zip", 1, "default", 1, 2)),
            step_completed,
            step_completed,  # the same record twice, as after a consumer restart
            event(task_id, 4, ev.TaskCompleted('{"ok": true}', 1)),
        ):
            producer.send_envelope(codec, topics.task_events, envelope)

        wait_for(lambda: not failures and all(
            any(r.answered == 200 for r in receiver.of(d)) for d in (progress, done)
        ), "both deliveries to succeed")
        wait_for(lambda: len(attempts(schema_pool, done)) == 3
                 and len(attempts(schema_pool, progress)) == 3, "the attempt log")
    finally:
        stop.set()
        service.join(DEADLINE_S)
    assert not service.is_alive()
    assert failures == []

    for delivery_id in (progress, done):
        assert attempts(schema_pool, delivery_id) == [
            (1, "retrying", 500), (2, "retrying", 500), (3, "delivered", 200),
        ]
        assert [r.answered for r in receiver.of(delivery_id)] == [500, 500, 200]
    assert pending(schema_pool, task_id) == []

    progress_body = assert_signed(receiver.of(progress)[-1], progress)
    assert (progress_body["event_type"], progress_body["status"], progress_body["step"]) == (
        "StepCompleted", "Running", "zip",
    )
    done_body = assert_signed(receiver.of(done)[-1], done)
    assert (done_body["event_type"], done_body["status"], done_body["version"]) == (
        "TaskCompleted", "Completed", 4,
    )
    assert done_body["response"] == {"ok": True}

    records = read_delivery_records(
        kafka_bootstrap, topics.webhook_deliveries, task_id, codec, count=6
    )
    assert sorted((r.delivery_id, r.attempt, r.outcome, r.status_code) for r in records) == [
        (progress, 1, "retrying", 500), (progress, 2, "retrying", 500),
        (progress, 3, "delivered", 200),
        (done, 1, "retrying", 500), (done, 2, "retrying", 500), (done, 3, "delivered", 200),
    ]

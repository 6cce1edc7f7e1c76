"""A consumer loop whose static member is fenced replaces its consumer and consumes again.

In R3 a broker SIGKILL moved the orchestrator's group coordinator, and the orchestrator's own
consumer came back fenced by its own ``group.instance.id`` (a fatal error): the process lived
on, polling nothing, and every task submitted after the fault stayed unlogged. Here a second
consumer with the same instance id does the fencing on purpose.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import ConsumerLoop, ConsumerSettings
from tasksaga.adapters.kafka_producer import KafkaProducer
from tasksaga.adapters.topics import ensure_topics
from tasksaga.core import messages as msg
from tasksaga.core.envelope import Envelope

pytestmark = pytest.mark.integration


def _cancel(task_id: str) -> Envelope:
    now_ms = int(time.time() * 1000)
    return Envelope(payload=msg.CancelTask(task_id, "fencing test", now_ms),
                    message_id=str(uuid.uuid4()), task_id=task_id, correlation_id=task_id,
                    causation_id=None, occurred_at_ms=now_ms, task_type="Probe")


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def test_a_fenced_static_member_replaces_its_consumer_and_receives_later_messages(
    kafka_bootstrap: str, topic_prefix: str,
) -> None:
    topic, dead = f"{topic_prefix}.commands", f"{topic_prefix}.dead-letters"
    ensure_topics(kafka_bootstrap, [topic, dead], partitions=1)
    codec, producer = AvroCodec(), KafkaProducer(kafka_bootstrap, "fencing-test")
    received: list[str] = []
    stop = threading.Event()
    settings = ConsumerSettings(bootstrap=kafka_bootstrap, group_id=f"{topic_prefix}-group",
                                topics=[topic], dead_letter_topic=dead,
                                group_instance_id=f"{topic_prefix}-member-0")
    loop = ConsumerLoop(settings, codec, lambda envelope: received.append(envelope.task_id),
                        producer, stop, now_ms=lambda: int(time.time() * 1000))
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        producer.send_and_wait(topic, b"a", codec.encode(_cancel("before")))
        _wait(lambda: "before" in received, 30, "the loop consumed the first message")

        # Another consumer with the same group.instance.id joins: the loop's member is fenced.
        intruder = Consumer({"bootstrap.servers": kafka_bootstrap,
                             "group.id": settings.group_id,
                             "group.instance.id": settings.group_instance_id,
                             "partition.assignment.strategy": settings.assignment_strategy,
                             "session.timeout.ms": 6_000, "enable.auto.commit": False})
        intruder.subscribe([topic])
        # Its join fences the loop's member; the loop's new consumer then fences it back.
        deadline = time.monotonic() + 30
        while loop.replacements == 0 and time.monotonic() < deadline:
            intruder.poll(0.2)
        intruder.close()
        _wait(lambda: loop.replacements >= 1, 30, "the fenced loop replaced its consumer")

        producer.send_and_wait(topic, b"a", codec.encode(_cancel("after")))
        _wait(lambda: "after" in received, 60, "the replaced consumer consumed a new message")
    finally:
        stop.set()
        thread.join(timeout=30)
    print(f"consumer fencing: replacements={loop.replacements} received={received}")
    assert not thread.is_alive()

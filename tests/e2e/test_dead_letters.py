"""Undecodable messages go to the dead-letter topic with a reason; later ones still run."""

from __future__ import annotations

import os
import uuid

from confluent_kafka import Consumer, Producer

from localrun import local_payload_cipher
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.wire import DeadLetter, Topics
from tests.e2e.conftest import System


def test_garbage_and_an_unknown_schema_are_dead_lettered_and_processing_goes_on(
    system: System,
) -> None:
    topics = Topics(system.prefix)
    bootstrap = system.env["TASKSAGA_KAFKA_BOOTSTRAP"]
    garbage = b"this is not avro at all"
    unknown_schema = b"\xc3\x01" + os.urandom(8) + b"\x02\x04body"
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for value in (garbage, unknown_schema):
        producer.produce(topics.task_commands, key=b"poison", value=value)
    producer.flush(10)

    reply = system.submit_zip({"after.txt": b"still processed"})
    assert system.wait_terminal(reply.json()["task_id"])["status"] == "Completed"

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dlq-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topics.dead_letter])
    codec = AvroCodec(cipher=local_payload_cipher())
    letters: list[DeadLetter] = []
    try:
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                letter = codec.decode(message.value()).payload
                assert isinstance(letter, DeadLetter)
                letters.append(letter)
            if len(letters) >= 2:
                break
    finally:
        consumer.close()
    by_value = {letter.value: letter for letter in letters}
    assert set(by_value) == {garbage, unknown_schema}
    assert "missing C3 01 header" in by_value[garbage].reason
    assert "unknown schema fingerprint" in by_value[unknown_schema].reason
    assert by_value[garbage].source_topic == topics.task_commands
    assert by_value[garbage].consumer_group == f"{system.prefix}-orchestrator"

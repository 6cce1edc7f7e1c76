"""Helpers of the tests that publish through the outbox relay or produce to Kafka directly:
read back what a topic holds, and run a relay until its outbox is empty.
"""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer

from tasksaga.adapters.outbox_relay import OutboxRelay


def read_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    """The topic's values from the start: at least ``expected``, then whatever else arrives
    until a poll comes back empty (30 s at the most)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(message.value())  # type: ignore[arg-type]
            if len(values) >= expected and message is None:
                break
    finally:
        consumer.close()
    return values


def drain(relay: OutboxRelay, rounds: int = 10) -> None:
    """Publish until the relay has nothing left."""
    for _ in range(rounds):  # bounded: a relay stuck on one batch fails the test, not hangs it
        if not relay.publish_pending():
            return
    raise AssertionError(f"the relay still had work after {rounds} rounds")

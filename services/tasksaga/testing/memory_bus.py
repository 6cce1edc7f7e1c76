"""A message bus in memory (the ``Bus`` port): every record kept in send order, each topic
read back like a Kafka topic with a single partition.

It refuses what Kafka refuses where a saga's behaviour depends on it: a record over the size
limit fails as too large (the worker then reports a clear ``ResultTooLarge`` failure), and a
test can make the next sends fail as if the brokers were down.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from confluent_kafka import KafkaError

from tasksaga.adapters.kafka_producer import DeliveryFailed
from tasksaga.core.ports import Headers

# librdkafka's default message.max.bytes: the producer refuses a larger record itself.
DEFAULT_MAX_RECORD_BYTES = 1_000_000


@dataclass(frozen=True)
class PublishedRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    offset: int  # the record's position on its topic


@dataclass(frozen=True)
class Sent:
    """What ``produce_nowait`` returns: the record's outcome, settled at once."""

    topic: str
    error: DeliveryFailed | None = None

    def wait(self, timeout: float) -> bool:
        return True  # settled when sent


class InMemoryBus:
    def __init__(self, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
        if max_record_bytes <= 0:
            raise ValueError(f"max_record_bytes must be positive, got {max_record_bytes}")
        self.max_record_bytes = max_record_bytes
        self._lock = threading.Lock()
        self._records: list[PublishedRecord] = []
        self._offsets: dict[str, int] = {}
        self._read = 0  # how many records ``take_new`` has handed out
        self._refusals: list[str] = []

    def send_and_wait(self, topic: str, key: bytes | None, value: bytes, headers: Headers = (),
                      timeout_s: float | None = None) -> None:
        self._publish(topic, key, value, headers)

    def produce_nowait(self, topic: str, key: bytes | None, value: bytes,
                       headers: Headers = ()) -> Sent:
        try:
            self._publish(topic, key, value, headers)
        except DeliveryFailed as error:
            return Sent(topic, error)
        return Sent(topic)

    def refuse_next(self, count: int = 1, reason: str = "all brokers down") -> None:
        """Make the next ``count`` sends fail with DeliveryFailed (retryable), as an outage."""
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        with self._lock:
            self._refusals.extend([reason] * count)

    def _publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> None:
        if not topic:
            raise ValueError("a record needs a topic")
        with self._lock:
            if self._refusals:
                raise DeliveryFailed(topic, self._refusals.pop(0), KafkaError._ALL_BROKERS_DOWN)
            size = len(value) + len(key or b"") + sum(len(k) + len(v) for k, v in headers)
            if size > self.max_record_bytes:
                raise DeliveryFailed(
                    topic, f"record of {size} bytes is over the {self.max_record_bytes} bytes"
                    " limit", KafkaError.MSG_SIZE_TOO_LARGE)
            offset = self._offsets.get(topic, 0)
            self._offsets[topic] = offset + 1
            self._records.append(PublishedRecord(topic, key, value, tuple(headers), offset))

    # -- reading -------------------------------------------------------------------------------

    def records(self, topic: str | None = None) -> list[PublishedRecord]:
        """Every record sent (to ``topic``), in send order."""
        with self._lock:
            return [r for r in self._records if topic is None or r.topic == topic]

    def take_new(self) -> list[PublishedRecord]:
        """The records sent since the last call, in send order (a consumer of every topic)."""
        with self._lock:
            new, self._read = self._records[self._read:], len(self._records)
        return new

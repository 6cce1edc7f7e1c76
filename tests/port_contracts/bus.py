"""The Bus port's contract: records keep their order, key, value and headers; a record too
large is refused as such, and nothing of it is published."""

from __future__ import annotations

from abc import ABC, abstractmethod

import pytest

from tasksaga.adapters.kafka_producer import DeliveryFailed
from tasksaga.core.ports import Bus

Received = tuple[bytes | None, bytes, list[tuple[str, bytes]]]  # key, value, headers


class BusContract(ABC):
    """Subclasses provide a ``bus`` fixture, a fresh topic and a way to read it back."""

    @abstractmethod
    def new_topic(self) -> str:
        """A topic no other test uses, ready to receive records."""

    @abstractmethod
    def read(self, bus: Bus, topic: str, expected: int) -> list[Received]:
        """Every record of ``topic`` from its start (at least ``expected`` of them)."""

    def test_sent_records_are_read_back_in_order_with_their_keys_and_headers(
        self, bus: Bus,
    ) -> None:
        topic = self.new_topic()
        bus.send_and_wait(topic, b"task-1", b"first", [("traceparent", b"00-abc")])
        bus.send_and_wait(topic, b"task-1", b"second")
        bus.send_and_wait(topic, None, b"unkeyed")
        assert self.read(bus, topic, expected=3) == [
            (b"task-1", b"first", [("traceparent", b"00-abc")]),
            (b"task-1", b"second", []),
            (None, b"unkeyed", []),
        ]

    def test_a_record_sent_without_waiting_is_delivered_too(self, bus: Bus) -> None:
        topic = self.new_topic()
        bus.produce_nowait(topic, b"task-1", b"heartbeat")
        bus.send_and_wait(topic, b"task-1", b"result")  # same key: after the heartbeat
        assert [value for _, value, _ in self.read(bus, topic, expected=2)] == [
            b"heartbeat", b"result"]

    def test_a_record_over_the_size_limit_is_refused_as_too_large(self, bus: Bus) -> None:
        topic = self.new_topic()
        with pytest.raises(DeliveryFailed) as refused:
            bus.send_and_wait(topic, b"task-1", b"x" * 2_000_000)
        assert refused.value.too_large  # the worker replaces it with a ResultTooLarge failure
        bus.send_and_wait(topic, b"task-1", b"small")
        assert [value for _, value, _ in self.read(bus, topic, expected=1)] == [b"small"]

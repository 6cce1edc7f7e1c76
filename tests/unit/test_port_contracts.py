"""The in-memory adapters of tasksaga.testing pass each port's contract suite (the real
adapters pass the same suites in tests/integration/test_port_contracts.py)."""

from __future__ import annotations

import itertools

import pytest

from tasksaga.core.ports import ArtifactRefs, Bus, Clock, EventStore, ObjectStore, OutboxRecord
from tasksaga.core.shards import ShardMap
from tasksaga.testing import InMemoryBus, InMemoryEventStore, InMemoryObjectStore, ManualClock
from tasksaga.testing.memory_artifact_refs import InMemoryArtifactRefs
from tests.port_contracts.artifact_refs import ArtifactRefsContract
from tests.port_contracts.bus import BusContract, Received
from tests.port_contracts.clock import ClockContract
from tests.port_contracts.event_store import EventStoreContract, ShardedEventStoreContract
from tests.port_contracts.object_store import ObjectStoreContract

_topics = itertools.count()


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> EventStore:
        # A clock at the real time's order of magnitude, as the database's would be.
        return InMemoryEventStore(ManualClock())

    def outbox(self, store: EventStore, topic: str) -> list[OutboxRecord]:
        assert isinstance(store, InMemoryEventStore)
        return [r for r in store.take_outbox() if r.topic == topic]


class TestShardedInMemoryEventStore(ShardedEventStoreContract):
    @pytest.fixture
    def store(self) -> EventStore:
        return InMemoryEventStore(ManualClock(), ShardMap.even(["alpha", "beta"]))

    def outbox(self, store: EventStore, topic: str) -> list[OutboxRecord]:
        assert isinstance(store, InMemoryEventStore)
        return [r for r in store.take_outbox() if r.topic == topic]


class TestInMemoryBus(BusContract):
    @pytest.fixture
    def bus(self) -> Bus:
        return InMemoryBus()

    def new_topic(self) -> str:
        return f"contract.{next(_topics)}"

    def read(self, bus: Bus, topic: str, expected: int) -> list[Received]:
        assert isinstance(bus, InMemoryBus)
        return [(r.key, r.value, list(r.headers)) for r in bus.records(topic)]


class TestInMemoryObjectStore(ObjectStoreContract):
    @pytest.fixture
    def objects(self) -> ObjectStore:
        return InMemoryObjectStore()


class TestManualClock(ClockContract):
    @pytest.fixture
    def clock(self) -> Clock:
        return ManualClock()


class TestInMemoryArtifactRefs(ArtifactRefsContract):
    @pytest.fixture
    def refs(self) -> ArtifactRefs:
        return InMemoryArtifactRefs()

"""Topics are usable by a consumer as soon as the services start.

R3 of the chaos suite found a fresh orchestrator consuming nothing for minutes: it subscribed
while its topics were not yet in the metadata of the broker it asked, and librdkafka asks again
only every topic.metadata.refresh.interval.ms (5 min by default). ``ensure_topics`` now returns
only once every live broker lists every topic with a leader per partition and each leader
answers for its partition's log.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from tasksaga.adapters import topics as topics_module
from tasksaga.adapters.topics import ensure_topics, wait_until_served


@dataclass
class _Partition:
    id: int
    leader: int
    replicas: tuple[int, ...] = (1,)


@dataclass
class _Topic:
    partitions: dict[int, _Partition]
    error: Any = None


@dataclass
class _Broker:
    id: int
    host: str
    port: int


@dataclass
class _Metadata:
    brokers: dict[int, _Broker]
    topics: dict[str, _Topic]


class _Done:
    def __init__(self, error: KafkaError | None = None) -> None:
        self.error = error

    def result(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise KafkaException(self.error)


@dataclass
class _Cluster:
    """Two brokers that learn of created topics late: broker 1 answers ``leaderless_answers``
    times without a leader, broker 2 answers ``unknown_answers`` times without the topic."""

    leaderless_answers: int = 2
    unknown_answers: int = 4
    logless_answers: int = 0  # ListOffsets answers NOT_LEADER_OR_FOLLOWER this many times
    offset_answers: int = 0
    bootstrap_unknown_answers: int = 0  # the bootstrap list answers this many times without
    bootstrap_answers: int = 0
    created: list[str] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    last_served: dict[str, bool] = field(default_factory=dict)
    brokers: dict[int, _Broker] = field(default_factory=lambda: {
        1: _Broker(1, "b1", 9092), 2: _Broker(2, "b2", 9092)})

    def client(self, config: dict[str, Any]) -> _Admin:
        return _Admin(self, config["bootstrap.servers"])

    def metadata(self, address: str) -> _Metadata:
        count = self.answers[address] = self.answers.get(address, 0) + 1
        topics: dict[str, _Topic] = {}
        if address == "b1:9092":
            leader = -1 if count <= self.leaderless_answers else 1
            topics = {n: _Topic({0: _Partition(0, leader)}) for n in self.created}
        elif address == "b2:9092" and count > self.unknown_answers:
            topics = {n: _Topic({0: _Partition(0, 2)}) for n in self.created}
        self.last_served[address] = bool(topics) and all(
            p.leader >= 0 for t in topics.values() for p in t.partitions.values())
        return _Metadata(self.brokers, topics)


class _Admin:
    def __init__(self, cluster: _Cluster, address: str) -> None:
        self.cluster, self.address = cluster, address

    def create_topics(self, wanted: list[Any], operation_timeout: float) -> dict[str, _Done]:
        self.cluster.created.extend(t.topic for t in wanted)
        return {t.topic: _Done() for t in wanted}

    def list_offsets(self, wanted: dict[TopicPartition, Any],
                     request_timeout: float) -> dict[TopicPartition, _Done]:
        self.cluster.offset_answers += 1
        error = (KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)
                 if self.cluster.offset_answers <= self.cluster.logless_answers else None)
        return {partition: _Done(error) for partition in wanted}

    def list_topics(self, timeout: float) -> _Metadata:
        if self.address in ("b1:9092", "b2:9092"):
            return self.cluster.metadata(self.address)
        # The bootstrap list: whichever broker answers, here the one that knows all (after
        # bootstrap_unknown_answers answers from one that does not know the topics yet).
        self.cluster.bootstrap_answers += 1
        if self.cluster.bootstrap_answers <= self.cluster.bootstrap_unknown_answers:
            return _Metadata(self.cluster.brokers, {})
        return _Metadata(self.cluster.brokers, {
            n: _Topic({0: _Partition(0, 1)}) for n in self.cluster.created})


def test_ensure_topics_returns_only_once_every_broker_serves_every_topic_with_a_leader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = _Cluster()
    monkeypatch.setattr(topics_module, "AdminClient", cluster.client)
    ensure_topics("b1:9092,b2:9092", ["orders", "results"], partitions=1)
    # Without the wait, ensure_topics returned after asking the bootstrap list once.
    assert cluster.last_served == {"b1:9092": True, "b2:9092": True}
    assert cluster.answers["b2:9092"] == cluster.unknown_answers + 1


def test_ensure_topics_waits_until_every_partition_leader_answers_for_its_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Listed with a leader is not enough: the leader may still be creating the log, and a
    record sent meanwhile waits until the producer gives up (the API answered 503)."""
    cluster = _Cluster(leaderless_answers=0, unknown_answers=0, logless_answers=3)
    monkeypatch.setattr(topics_module, "AdminClient", cluster.client)
    ensure_topics("b1:9092,b2:9092", ["orders"], partitions=1)
    assert cluster.offset_answers == cluster.logless_answers + 1


def test_a_bootstrap_answer_without_the_topics_is_waited_out_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every broker listed the topics, then the cluster client's own metadata request reached
    one that had not applied them yet: the orchestrator died of a KeyError at start (R3)."""
    cluster = _Cluster(leaderless_answers=0, unknown_answers=0, bootstrap_unknown_answers=3)
    monkeypatch.setattr(topics_module, "AdminClient", cluster.client)
    ensure_topics("b1:9092,b2:9092", ["orders"], partitions=1)
    assert cluster.bootstrap_answers > cluster.bootstrap_unknown_answers


def test_a_topic_a_broker_never_serves_fails_with_the_broker_and_the_topic_named() -> None:
    cluster = _Cluster(unknown_answers=10**9)
    cluster.created.append("orders")
    with pytest.raises(RuntimeError) as raised:
        wait_until_served("b1:9092,b2:9092", ["orders"], timeout_s=0.5, poll_s=0.05,
                          admin_factory=cluster.client)
    message = str(raised.value)
    assert "broker 2 (b2:9092): orders (unknown)" in message
    assert "broker 1" not in message  # broker 1 found its leader meanwhile


def test_wait_refuses_a_non_positive_timeout() -> None:
    with pytest.raises(ValueError, match="timeout must be positive"):
        wait_until_served("b1:9092", ["orders"], timeout_s=0)


def test_ensure_topics_on_the_broker_leaves_every_topic_served(kafka_bootstrap: str) -> None:
    names = [f"t{uuid.uuid4().hex[:10]}-{n}" for n in range(3)]
    ensure_topics(kafka_bootstrap, names, partitions=3)
    # A second check from scratch passes at once: nothing was left pending.
    wait_until_served(kafka_bootstrap, names, timeout_s=1)

"""Kafka helpers of the chaos suite: consumer-group positions, lag, resets and republishing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient


def partitions_of(bootstrap: str, topic: str) -> list[int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(topic, timeout=10).topics[topic]
    return sorted(metadata.partitions)


def lag(bootstrap: str, group: str, topics: Sequence[str]) -> int:
    """Messages of the topics the group has not committed past (uncommitted = from 0)."""
    return sum(partition_lags(bootstrap, group, topics).values())


def partition_lags(bootstrap: str, group: str,
                   topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> records the group has not committed past (uncommitted = from 0)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        wanted = [TopicPartition(t, p) for t in topics for p in partitions_of(bootstrap, t)]
        lags = {}
        for position in consumer.committed(wanted, timeout=10):
            _low, high = consumer.get_watermark_offsets(position, timeout=10)
            lags[(position.topic, position.partition)] = high - max(position.offset, 0)
        return lags
    finally:
        consumer.close()


def wait_caught_up(bootstrap: str, groups: Mapping[str, Sequence[str]], timeout_s: float) -> int:
    """Wait until every group has committed everything; returns the lag left (0 = caught up)."""
    deadline = time.monotonic() + timeout_s
    left = -1
    while time.monotonic() < deadline:
        left = sum(lag(bootstrap, group, topics) for group, topics in groups.items())
        if left == 0:
            return 0
        time.sleep(1.0)
    return left


def delete_groups(bootstrap: str, groups: Sequence[str], timeout_s: float = 60) -> None:
    """Delete consumer groups (their members stopped); retried while the broker still counts
    a member (static members stay until their session times out)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    pending = list(groups)
    deadline = time.monotonic() + timeout_s
    while pending:
        failed: list[str] = []
        for group, future in admin.delete_consumer_groups(pending, request_timeout=10).items():
            try:
                future.result()
            except KafkaException as error:
                if "GROUP_ID_NOT_FOUND" in str(error):
                    continue
                failed.append(group)
                if time.monotonic() > deadline:
                    raise AssertionError(f"could not delete group {group}: {error}") from error
        pending = failed
        if pending:
            time.sleep(1.0)


def republish(bootstrap: str, topics: Sequence[str]) -> int:
    """Read every record of the topics from the start and produce it again, unchanged."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"chaos-{uuid.uuid4()}",
                       "auto.offset.reset": "earliest", "enable.auto.commit": False})
    ends: dict[tuple[str, int], int] = {}
    assignment: list[TopicPartition] = []
    for topic in topics:
        for partition in partitions_of(bootstrap, topic):
            _low, high = reader.get_watermark_offsets(TopicPartition(topic, partition),
                                                      timeout=10)
            if high > 0:
                ends[(topic, partition)] = high
                assignment.append(TopicPartition(topic, partition, 0))
    reader.assign(assignment)
    writer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                       "enable.idempotence": True})
    count = 0
    remaining = dict(ends)
    try:
        while remaining:
            message = reader.poll(2.0)
            if message is None:
                continue
            if message.error() is not None:
                continue
            where = (message.topic() or "", message.partition() or 0)
            offset = message.offset() or 0
            if where not in remaining or offset >= remaining[where]:
                continue
            writer.produce(where[0], key=message.key(), value=message.value(),
                           headers=message.headers() or [], partition=where[1])
            writer.poll(0)
            count += 1
            if offset + 1 >= remaining[where]:
                del remaining[where]
        assert writer.flush(30) == 0
    finally:
        reader.close()
    return count

"""The lag watch reads a real group's committed offsets, the watermarks, the oldest unconsumed
record's timestamp and the topic's retention from Kafka, and reports the backlog age as a
gauge."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tasksaga.adapters.lag_watch import LagWatch
from tasksaga.adapters.topics import ensure_topics

pytestmark = pytest.mark.integration


def test_a_group_behind_on_a_short_retention_topic_is_alerted_and_measured(
    kafka_bootstrap: str, topic_prefix: str,
) -> None:
    topic, group = f"{topic_prefix}.events", f"{topic_prefix}-slow"
    ensure_topics(kafka_bootstrap, [topic], 1, config={"retention.ms": "60000"})
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for n in range(5):
        producer.produce(topic, value=f"r{n}".encode())
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)  # read 2 of 5
    consumer.close()
    reader = InMemoryMetricReader()
    watch = LagWatch(kafka_bootstrap, {group: [topic]}, alert_ratio=0.5,
                     meter=MeterProvider(metric_readers=[reader]).get_meter("test"))
    now = int(time.time() * 1000)
    assert watch.check(now) == []  # the backlog is seconds old, the retention a minute
    [alert] = watch.check(now + 31_000)
    watch.close()
    assert (alert.group, alert.lag, alert.retention_s) == (group, 3, 60.0)
    data = reader.get_metrics_data()
    assert data is not None
    points: list[Any] = [
        point for metric in data.resource_metrics[0].scope_metrics[0].metrics
        if metric.name == "tasksaga.consumer.backlog_age_seconds"
        for point in metric.data.data_points]
    assert points and points[0].attributes["group"] == group and points[0].value >= 31
    print(f"lag alert: {alert}")


def test_a_caught_up_group_reports_a_backlog_age_of_zero(kafka_bootstrap: str) -> None:
    """The series exists while nothing is behind (the dashboard's panel shows 0, not "no
    data"), one point per partition."""
    topic, group = f"lag-idle-{uuid.uuid4().hex[:8]}", f"lag-idle-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [topic], 2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, value=b"r", partition=0)
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)  # all read
    consumer.close()
    reader = InMemoryMetricReader()
    watch = LagWatch(kafka_bootstrap, {group: [topic]},
                     meter=MeterProvider(metric_readers=[reader]).get_meter("test"))
    assert watch.check(int(time.time() * 1000)) == []
    watch.close()
    data = reader.get_metrics_data()
    assert data is not None
    found: list[Any] = [
        point for metric in data.resource_metrics[0].scope_metrics[0].metrics
        if metric.name == "tasksaga.consumer.backlog_age_seconds"
        for point in metric.data.data_points]
    points = {point.attributes["partition"]: point.value for point in found}
    assert points == {0: 0.0, 1: 0.0}

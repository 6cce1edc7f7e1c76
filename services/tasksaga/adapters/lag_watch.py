"""Consumer lag watch: alert before a stalled consumer group loses data to topic retention.

A topic deletes records older than its ``retention.ms`` whether or not a group has read them.
The watch measures, per group and partition, the oldest record the group has not consumed yet
(the record at its committed offset) and alerts (a warning log line and a gauge) once that
record's age passes ``alert_ratio`` of the retention: with the default 0.5, half the retention
is left to repair the consumer before anything is lost.

The rule (``lag_alerts``) is pure; ``LagWatch`` reads the offsets, watermarks, timestamps and
retention from Kafka. It runs in the orchestrator for every group of its deployment, so a
consumer that is down entirely is watched too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionBacklog:
    group: str
    topic: str
    partition: int
    committed: int  # the group's next offset to read (-1: nothing committed yet)
    log_start: int
    log_end: int
    oldest_unconsumed_ms: int | None  # timestamp of the record at the committed offset
    retention_ms: int | None  # None or -1: the topic keeps records forever

    @property
    def lag(self) -> int:
        start = self.committed if self.committed >= 0 else self.log_start
        return max(self.log_end - max(start, self.log_start), 0)


@dataclass(frozen=True)
class LagAlert:
    group: str
    topic: str
    partition: int
    lag: int
    age_s: float
    retention_s: float

    @property
    def loss_in_s(self) -> float:
        return max(self.retention_s - self.age_s, 0.0)

    def __str__(self) -> str:
        return (f"consumer lag alert: group {self.group} has not consumed {self.lag} records of "
                f"{self.topic}[{self.partition}]; the oldest is {self.age_s:.0f} s old and the "
                f"topic keeps records {self.retention_s:.0f} s: data is lost in about "
                f"{self.loss_in_s:.0f} s unless the group catches up")


def lag_alerts(backlogs: Sequence[PartitionBacklog], now_ms: int,
               alert_ratio: float) -> list[LagAlert]:
    alerts = []
    for backlog in backlogs:
        if (backlog.lag == 0 or backlog.oldest_unconsumed_ms is None
                or not backlog.retention_ms or backlog.retention_ms < 0):
            continue
        age_ms = now_ms - backlog.oldest_unconsumed_ms
        if age_ms >= alert_ratio * backlog.retention_ms:
            alerts.append(LagAlert(backlog.group, backlog.topic, backlog.partition, backlog.lag,
                                   age_ms / 1000, backlog.retention_ms / 1000))
    return alerts


class LagWatch:
    def __init__(self, bootstrap: str, groups: Mapping[str, Sequence[str]],
                 alert_ratio: float = 0.5, meter: Any = None, timeout_s: float = 10.0) -> None:
        self._groups = {group: list(topics) for group, topics in groups.items()}
        self._ratio = alert_ratio
        self._timeout_s = timeout_s
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        # Reads watermarks and single records; never joins a group, never commits.
        self._reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "tasksaga-lag-watch",
                                 "enable.auto.commit": False})
        # A group's committed offsets are read by a consumer carrying that group's id, never by
        # AdminClient.list_consumer_group_offsets: when the group coordinator moves (a broker
        # stops), librdkafka answers the admin client's failed OffsetFetch by messaging the
        # client's consumer group, which an admin client does not have, and the process dies
        # in rdk:main (a NULL dereference at 0x58, librdkafka#5315; it killed the orchestrator
        # once per broker fault in R3). A consumer that never subscribes never joins the group.
        self._bootstrap = bootstrap
        self._offset_readers: dict[str, Consumer] = {}
        self.latest: list[PartitionBacklog] = []
        self._now_ms: Callable[[], int] | None = None
        if meter is not None:
            meter.create_observable_gauge(
                "tasksaga.consumer.backlog_age_seconds", callbacks=[self._observe],
                description="age of the oldest record a consumer group has not consumed")
            meter.create_observable_gauge(
                "tasksaga.consumer.lag", callbacks=[self._observe_lag],
                description="records a consumer group has not consumed, per partition")

    def check(self, now_ms: int) -> list[LagAlert]:
        """Measure every group, log an alert for each partition at risk, return them."""
        self.latest = self.measure()
        self._now_ms = lambda: now_ms
        alerts = lag_alerts(self.latest, now_ms, self._ratio)
        for alert in alerts:
            log.warning("%s", alert)
        return alerts

    def measure(self) -> list[PartitionBacklog]:
        topics = sorted({t for ts in self._groups.values() for t in ts})
        metadata = self._reader.list_topics(timeout=self._timeout_s).topics
        retention = self._retention(topics)
        found = []
        for group, group_topics in self._groups.items():
            partitions = [TopicPartition(t, p) for t in group_topics if t in metadata
                          for p in metadata[t].partitions]
            if not partitions:
                continue
            committed = self._offset_reader(group).committed(partitions,
                                                             timeout=self._timeout_s)
            for tp in committed:
                low, high = self._reader.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=self._timeout_s)
                offset = tp.offset if tp.offset >= 0 else -1
                pending_from = max(offset if offset >= 0 else low, low)
                oldest = (self._timestamp_at(tp.topic, tp.partition, pending_from)
                          if pending_from < high else None)
                found.append(PartitionBacklog(group, tp.topic, tp.partition, offset, low, high,
                                              oldest, retention.get(tp.topic)))
        return found

    def _offset_reader(self, group: str) -> Consumer:
        reader = self._offset_readers.get(group)
        if reader is None:
            reader = Consumer({"bootstrap.servers": self._bootstrap, "group.id": group,
                               "enable.auto.commit": False})
            self._offset_readers[group] = reader
        return reader

    def _retention(self, topics: list[str]) -> dict[str, int]:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics]
        retention = {}
        for resource, future in self._admin.describe_configs(resources).items():
            entries = future.result(timeout=self._timeout_s)
            if "retention.ms" in entries:
                retention[resource.name] = int(entries["retention.ms"].value)
        return retention

    def _timestamp_at(self, topic: str, partition: int, offset: int) -> int | None:
        self._reader.assign([TopicPartition(topic, partition, offset)])
        try:
            message = self._reader.poll(self._timeout_s)
            if message is None or message.error() is not None:
                return None
            _kind, timestamp = message.timestamp()
            return int(timestamp) if timestamp > 0 else None
        finally:
            self._reader.unassign()

    def _observe(self, _options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        if self._now_ms is None:
            return []
        now = self._now_ms()
        # A caught-up partition reports 0, not nothing: a dashboard shows an idle group as
        # healthy instead of "no data", and an alert on the series sees it recover.
        return [Observation((now - b.oldest_unconsumed_ms) / 1000
                            if b.oldest_unconsumed_ms is not None and b.lag else 0.0,
                            {"group": b.group, "topic": b.topic, "partition": b.partition})
                for b in self.latest]

    def _observe_lag(self, _options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        return [Observation(b.lag, {"group": b.group, "topic": b.topic,
                                    "partition": b.partition}) for b in self.latest]

    def close(self) -> None:
        for reader in [self._reader, *self._offset_readers.values()]:
            reader.close()

"""Creates the topics the services use (idempotent)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterable
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tasksaga.adapters.wire import Topics
from tasksaga.config import split_list
from tasksaga.core.registry import load_registry

log = logging.getLogger(__name__)


def all_topic_names(topics: Topics, queues: Iterable[str]) -> list[str]:
    return [
        topics.task_commands, topics.task_events, topics.step_results, topics.dead_letter,
        topics.webhook_deliveries, topics.step_cancellations,
        *(topics.step_commands(q) for q in sorted(set(queues))),
    ]


class TopicSettings(Protocol):
    kafka_bootstrap: str
    topic_partitions: int
    topic_replication_factor: int
    topic_min_insync_replicas: int


def ensure_service_topics(settings: TopicSettings, names: Iterable[str]) -> None:
    """The topics a service needs, with the deployment's partitions and replication."""
    ensure_topics(settings.kafka_bootstrap, names, settings.topic_partitions,
                  settings.topic_replication_factor,
                  min_insync_replicas=settings.topic_min_insync_replicas)


def ensure_topics(
    bootstrap: str, names: Iterable[str], partitions: int = 6, replication: int = 1,
    config: dict[str, str] | None = None, min_insync_replicas: int | None = None,
) -> None:
    """Create the topics that do not exist yet. ``min_insync_replicas`` (unless ``config``
    sets min.insync.replicas itself) is how many replicas must have a record before an
    acks=all producer hears it was written."""
    if replication < 1:
        raise ValueError(f"the replication factor must be at least 1, got {replication}")
    config = dict(config or {})
    if min_insync_replicas is not None:
        if not 1 <= min_insync_replicas <= replication:
            raise ValueError(
                f"min.insync.replicas must be between 1 and the replication factor "
                f"({replication}), got {min_insync_replicas}")
        config.setdefault("min.insync.replicas", str(min_insync_replicas))
    names = list(names)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = [NewTopic(n, num_partitions=partitions, replication_factor=replication,
                       config=config)
              for n in names]
    for name, future in admin.create_topics(wanted, operation_timeout=30).items():
        try:
            future.result(timeout=60)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"could not create topic {name}: {error}") from error
    # Topics created earlier keep their replication: say so rather than pretend.
    metadata = admin.list_topics(timeout=30).topics
    for name in names:
        topic = metadata.get(name)
        if topic is None or not topic.partitions:
            continue
        replicas = min(len(p.replicas) for p in topic.partitions.values())
        if replicas < replication:
            log.warning("topic %s has %d replicas, fewer than the %d configured; raise it with"
                        " kafka-reassign-partitions", name, replicas, replication)


def main() -> int:
    parser = argparse.ArgumentParser(description="Create tasksaga's Kafka topics.")
    parser.add_argument("--bootstrap", default=os.environ.get("TASKSAGA_KAFKA_BOOTSTRAP"))
    parser.add_argument("--prefix", default=os.environ.get("TASKSAGA_TOPIC_PREFIX", "tasksaga"))
    parser.add_argument("--partitions", type=int,
                        default=int(os.environ.get("TASKSAGA_TOPIC_PARTITIONS", "6")))
    parser.add_argument("--replication-factor", type=int,
                        default=int(os.environ.get("TASKSAGA_TOPIC_REPLICATION_FACTOR", "1")))
    parser.add_argument("--min-insync-replicas", type=int,
                        default=int(os.environ.get("TASKSAGA_TOPIC_MIN_INSYNC_REPLICAS", "1")))
    parser.add_argument("queues", nargs="*",
                        help="step queues (default: those of the tasks in TASKSAGA_TASK_MODULES)")
    args = parser.parse_args()
    if not args.bootstrap:
        print("set TASKSAGA_KAFKA_BOOTSTRAP or pass --bootstrap", file=sys.stderr)
        return 2
    queues = args.queues
    if not queues:
        modules = split_list(os.environ.get("TASKSAGA_TASK_MODULES",
                                            "tasksaga_examples.zip_archive"))
        assert isinstance(modules, list)
        queues = sorted(load_registry(modules).queues())
    names = all_topic_names(Topics(args.prefix), queues)
    try:
        ensure_topics(args.bootstrap, names, args.partitions, args.replication_factor,
                      min_insync_replicas=args.min_insync_replicas)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    print("\n".join(names))
    return 0

"""Creates the topics the services use (idempotent)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewTopic,
    OffsetSpec,
)

from tasksaga.adapters.wire import Topics
from tasksaga.config import split_list
from tasksaga.core.capabilities import Route
from tasksaga.core.registry import load_registry

log = logging.getLogger(__name__)

# How long a created topic may take to reach every broker's metadata with a leader for each
# partition (normally well under a second; a cluster electing leaders takes a few seconds).
VISIBLE_TIMEOUT_S = 60.0


def all_topic_names(topics: Topics, queues: Iterable[str],
                    routes: Iterable[Route] = ()) -> list[str]:
    """The service topics, each queue's step commands, and the capability routes' topics."""
    plain = [topics.step_commands(q) for q in sorted(set(queues))]
    capable = sorted({topics.step_commands(r.queue, r.requires) for r in routes} - set(plain))
    return [
        topics.task_commands, topics.task_events, topics.step_results, topics.dead_letter,
        topics.webhook_deliveries, topics.step_cancellations, *plain, *capable,
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
    visible_timeout_s: float = VISIBLE_TIMEOUT_S,
) -> None:
    """Create the topics that do not exist yet. ``min_insync_replicas`` (unless ``config``
    sets min.insync.replicas itself) is how many replicas must have a record before an
    acks=all producer hears it was written.

    Returns once every topic is in every live broker's metadata with a leader for each
    partition (see ``wait_until_served``), so that a consumer subscribing next finds them."""
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
    wait_until_served(bootstrap, names, timeout_s=visible_timeout_s)


def wait_until_served(
    bootstrap: str, names: Iterable[str], timeout_s: float = VISIBLE_TIMEOUT_S,
    poll_s: float = 0.2, admin_factory: Callable[[dict[str, Any]], Any] | None = None,
) -> None:
    """Wait until each live broker lists every topic in ``names`` with a leader for every
    partition and every partition's leader answers for its log, or raise RuntimeError naming
    what is missing where.

    CreateTopics returns once the controller committed the topics; each broker applies that
    to its own metadata, and creates the partitions' logs, a little later (seconds on a busy
    machine). A consumer whose metadata request reaches a broker that does not know its
    topic yet assigns nothing and asks again only after topic.metadata.refresh.interval.ms;
    a record sent to a leader still creating its log waits until the producer gives up.
    Each broker is asked by a client bootstrapped with that broker alone (librdkafka connects
    sparsely, so it asks that one); the leaders are asked for each partition's end offset."""
    if timeout_s <= 0:
        raise ValueError(f"the timeout must be positive, got {timeout_s}")
    names = list(names)
    admin_factory = admin_factory or AdminClient
    cluster = admin_factory({"bootstrap.servers": bootstrap})
    per_broker: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        lacking = (_lacking(cluster, per_broker, names, admin_factory)
                   or _leaders_lacking(cluster, names))
        if not lacking:
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"topics not served with a leader for every partition by every broker after"
                f" {timeout_s:.0f} s: " + "; ".join(f"{where}: {what}"
                                                    for where, what in lacking.items()))
        time.sleep(poll_s)


def _lacking(cluster: Any, per_broker: dict[str, Any], names: list[str],
             admin_factory: Callable[[dict[str, Any]], Any]) -> dict[str, str]:
    """What each live broker does not list yet, by broker (empty when all is listed)."""
    try:
        brokers = cluster.list_topics(timeout=10).brokers
    except KafkaException as error:
        return {"cluster": f"no metadata ({error})"}
    lacking: dict[str, str] = {}
    for broker in brokers.values():
        address = f"{broker.host}:{broker.port}"
        admin = per_broker.get(address)
        if admin is None:
            admin = per_broker[address] = admin_factory({"bootstrap.servers": address})
        try:
            topics = admin.list_topics(timeout=10).topics
        except KafkaException as error:
            lacking[f"broker {broker.id}"] = f"no metadata ({error})"
            continue
        missing = [f"{name} ({problem})" for name in names
                   if (problem := _unserved(topics.get(name)))]
        if missing:
            lacking[f"broker {broker.id} ({address})"] = ", ".join(missing)
    return lacking


def _leaders_lacking(cluster: Any, names: list[str]) -> dict[str, str]:
    """The partitions whose leader does not answer ListOffsets yet (its log is not loaded)."""
    try:
        topics = cluster.list_topics(timeout=10).topics
    except KafkaException as error:
        return {"cluster": f"no metadata ({error})"}
    # The broker answering here may be another than the one _lacking asked a moment ago, and
    # not know a topic yet: that is "not served yet", not an error.
    unknown = [name for name in names if name not in topics]
    if unknown:
        return {"cluster": f"topics not in its metadata yet: {', '.join(unknown)}"}
    wanted = {TopicPartition(name, p): OffsetSpec.latest()  # type: ignore[no-untyped-call]
              for name in names for p in topics[name].partitions}
    failed = []
    for partition, future in cluster.list_offsets(wanted, request_timeout=10).items():
        try:
            future.result()
        except KafkaException as error:
            failed.append(f"{partition.topic}[{partition.partition}] ({error.args[0].str()})")
    return {"partition leaders": ", ".join(sorted(failed))} if failed else {}


def _unserved(topic: Any) -> str:
    """Why a consumer could not fetch from this topic yet ("" when it can)."""
    if topic is None:
        return "unknown"
    if topic.error is not None:
        return str(topic.error)
    if not topic.partitions:
        return "no partitions"
    leaderless = sorted(p.id for p in topic.partitions.values() if p.leader < 0)
    return f"no leader for partitions {leaderless}" if leaderless else ""


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
    routes: set[Route] = set()
    if not queues:
        modules = split_list(os.environ.get("TASKSAGA_TASK_MODULES",
                                            "tasksaga_examples.zip_archive"))
        assert isinstance(modules, list)
        registry = load_registry(modules)
        queues, routes = sorted(registry.queues()), registry.routes()
    names = all_topic_names(Topics(args.prefix), queues, routes)
    try:
        ensure_topics(args.bootstrap, names, args.partitions, args.replication_factor,
                      min_insync_replicas=args.min_insync_replicas)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    print("\n".join(names))
    return 0

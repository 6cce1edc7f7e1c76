"""Creates the topics the services use (idempotent)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tasksaga.adapters.wire import Topics
from tasksaga.config import split_list
from tasksaga.core.registry import load_registry


def all_topic_names(topics: Topics, queues: Iterable[str]) -> list[str]:
    return [
        topics.task_commands, topics.task_events, topics.step_results, topics.dead_letter,
        topics.webhook_deliveries, topics.step_cancellations,
        *(topics.step_commands(q) for q in sorted(set(queues))),
    ]


def ensure_topics(
    bootstrap: str, names: Iterable[str], partitions: int = 6, replication: int = 1,
    config: dict[str, str] | None = None,
) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = [NewTopic(n, num_partitions=partitions, replication_factor=replication,
                       config=config or {})
              for n in names]
    for name, future in admin.create_topics(wanted, operation_timeout=30).items():
        try:
            future.result(timeout=60)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"could not create topic {name}: {error}") from error


def main() -> int:
    parser = argparse.ArgumentParser(description="Create tasksaga's Kafka topics.")
    parser.add_argument("--bootstrap", default=os.environ.get("TASKSAGA_KAFKA_BOOTSTRAP"))
    parser.add_argument("--prefix", default=os.environ.get("TASKSAGA_TOPIC_PREFIX", "tasksaga"))
    parser.add_argument("--partitions", type=int,
                        default=int(os.environ.get("TASKSAGA_TOPIC_PARTITIONS", "6")))
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
    ensure_topics(args.bootstrap, names, args.partitions)
    print("\n".join(names))
    return 0

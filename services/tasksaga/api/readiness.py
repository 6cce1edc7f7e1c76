"""Readiness: the API can serve only when Postgres, Kafka and object storage all answer.

Each check is bounded by a short timeout, so a probe never hangs on a dead dependency.
"""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka.admin import AdminClient

from tasksaga.api.shard_queries import TaskQueries
from tasksaga.core.ports import ObjectStore


def readiness_checks(queries: TaskQueries, kafka_bootstrap: str, objects: ObjectStore,
                     bucket: str | None, timeout_s: float = 2.0
                     ) -> Callable[[], dict[str, str]]:
    """Named checks, each "ok" or "failing (<error type>)"."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap,
                         "socket.timeout.ms": int(timeout_s * 1000)})

    def check() -> dict[str, str]:
        results: dict[str, str] = {}
        results["postgres"] = _outcome(queries.ready)
        results["kafka"] = _outcome(lambda: admin.list_topics(timeout=timeout_s))
        if bucket is not None:
            results["object_store"] = _outcome(lambda: objects.exists(bucket, ".readiness"))
        return results

    return check


def _outcome(probe: Callable[[], object]) -> str:
    try:
        probe()
    except Exception as error:
        # Type only: a probe's message can carry internal host names.
        return f"failing ({type(error).__name__})"
    return "ok"

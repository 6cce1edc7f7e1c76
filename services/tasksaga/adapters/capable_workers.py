"""Whether a worker able to run a capability route is connected: its consumer group's members.

Each (queue, capability set) has a topic and a consumer group of its own
(tasksaga.core.capabilities); a group without members means no worker with those
capabilities runs, and the steps routed there wait. The API shows it in a task's status
(``waiting_for_capabilities``) and the orchestrator logs it and exports it as a gauge, instead
of a silent wait until the step's start timeout.

The members are read with DescribeGroups (AdminClient.describe_consumer_groups), which asks
the group coordinator and never fetches offsets (see lag_watch.py for why offsets are not read
with the admin client).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tasksaga.core.capabilities import Route, describe

log = logging.getLogger(__name__)

GroupOf = Callable[[Route], str]


def worker_group_of(prefix: str, worker_group: str) -> GroupOf:
    """The consumer group of a route's workers, as the worker names it (worker/main.py)."""
    return lambda route: f"{prefix}-{worker_group}-{route.name}"


class ConsumerGroupMembers:
    """How many workers consume a route now (None: Kafka did not say), cached ``ttl_s``."""

    def __init__(self, bootstrap: str, group_of: GroupOf, ttl_s: float = 5.0,
                 timeout_s: float = 5.0, monotonic: Callable[[], float] = time.monotonic,
                 admin: Any = None) -> None:
        self._admin = admin or AdminClient({"bootstrap.servers": bootstrap})
        self._group_of = group_of
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._monotonic = monotonic
        self._cache: dict[Route, tuple[float, int | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, route: Route) -> int | None:
        now = self._monotonic()
        with self._lock:
            cached = self._cache.get(route)
            if cached is not None and now - cached[0] < self._ttl_s:
                return cached[1]
        count = self._describe(self._group_of(route))
        with self._lock:
            self._cache[route] = (now, count)
        return count

    def _describe(self, group: str) -> int | None:
        # Twice: the first request of a client may reach a broker that is not the group's
        # coordinator (NOT_COORDINATOR) before it has looked the coordinator up.
        for _attempt in range(2):
            try:
                futures = self._admin.describe_consumer_groups(
                    [group], request_timeout=self._timeout_s)
                return len(futures[group].result(timeout=self._timeout_s).members)
            except (KafkaException, TimeoutError) as error:
                log.debug("could not describe consumer group %s: %s", group, error)
        return None


class CapabilityWatch:
    """Logs (once per change) and exports which capability routes have no worker."""

    def __init__(self, routes: Iterable[Route], members: Callable[[Route], int | None],
                 meter: Any = None) -> None:
        self._routes = sorted(r for r in set(routes) if r.requires)
        self._members = members
        self.latest: dict[Route, int | None] = {}
        if meter is not None:
            meter.create_observable_gauge(
                "tasksaga.workers.capable_consumers", callbacks=[self._observe],
                description="workers consuming a queue's steps that require capabilities "
                            "(0: those steps wait for a worker that has them)")

    def check(self) -> list[Route]:
        """The routes without a worker now; says so when a route loses or regains them."""
        before, unserved = self.latest, []
        self.latest = {route: self._members(route) for route in self._routes}
        for route, count in self.latest.items():
            if count == 0:
                unserved.append(route)
                if before.get(route) != 0:
                    log.warning("no worker with capabilities %s consumes queue %s: its steps "
                                "requiring them wait for one (start a worker with "
                                "TASKSAGA_WORKER_CAPABILITIES=%s)", describe(route.requires),
                                route.queue, ",".join(sorted(route.requires)))
            elif count and before.get(route) == 0:
                log.info("%d worker(s) with capabilities %s now consume queue %s", count,
                         describe(route.requires), route.queue)
        return unserved

    def _observe(self, _options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        return [Observation(count, {"queue": route.queue,
                                    "capabilities": ",".join(sorted(route.requires))})
                for route, count in self.latest.items() if count is not None]

"""What the API's routes are wired to (built once by the composition root, api/main.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request

from tasksaga.adapters.archive import Archiver
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.clock import now_ms
from tasksaga.adapters.kafka_producer import KafkaProducer
from tasksaga.adapters.url_guard import UrlGuard
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.api.body_limits import Limits
from tasksaga.api.security import Security
from tasksaga.api.shard_queries import TaskQueries
from tasksaga.core import messages as msg
from tasksaga.core.capabilities import Route
from tasksaga.core.ports import ObjectStore
from tasksaga.core.registry import TaskRegistry
from tasksaga.worker.artifacts import ArtifactStore

if TYPE_CHECKING:
    from tasksaga.api.live.routes import LiveService
    from tasksaga.api.repair_access import RepairServices

log = logging.getLogger(__name__)


class SubmitUnavailable(HTTPException):
    """503: the command log (Kafka) cannot take the submission now; nothing was accepted."""

    def __init__(self, retry_after_s: int, reason: str) -> None:
        super().__init__(503, f"submissions are unavailable: {reason}; nothing was accepted, "
                              f"retry in {retry_after_s} s with the same Idempotency-Key",
                         headers={"Retry-After": str(retry_after_s)})


@dataclass
class SubmitGate:
    """Fail fast while Kafka is down: after a send failed with every broker unreachable, or
    after ``trip_after`` failed sends in a row (no send acknowledged in between: a cluster
    that accepts connections but no records), refuse at once for ``open_s`` (then let one
    request try again), so submits never pile up on the thread pool and reads and health
    probes keep answering.

    Otherwise one failure does not trip it: while a broker fails over, only the partitions it
    led refuse records, and the submissions bound for the others must keep being accepted."""

    open_s: float = 5.0
    trip_after: int = 3
    monotonic: Callable[[], float] = time.monotonic
    _failed_at: float | None = None
    _failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self) -> None:
        with self._lock:
            if self._failed_at is None:
                return
            waited = self.monotonic() - self._failed_at
            if waited < self.open_s:
                raise SubmitUnavailable(max(1, round(self.open_s - waited)),
                                        "the message broker is unreachable")
            self._failed_at = self.monotonic()  # this request probes; others still wait

    def failed(self, brokers_down: bool = False) -> None:
        with self._lock:
            self._failures += 1
            if brokers_down or self._failures >= self.trip_after or self._failed_at is not None:
                self._failed_at = self.monotonic()

    def succeeded(self) -> None:
        with self._lock:
            self._failed_at = None
            self._failures = 0


@dataclass
class ApiDependencies:
    registry: TaskRegistry
    queries: TaskQueries  # one database's projections, or every shard's
    producer: KafkaProducer
    codec: AvroCodec
    topics: Topics
    objects: ObjectStore
    security: Security
    url_guard: UrlGuard
    limits: Limits
    task_id_secret: bytes
    max_files: int = 100
    max_page_size: int = 100
    submit_gate: SubmitGate = field(default_factory=SubmitGate)
    readiness: Callable[[], dict[str, str]] | None = None
    live: LiveService | None = None  # SSE and WebSocket streams (api/live)
    repair: RepairServices | None = None  # dead letters and the orphan sweep (api/repair_*)
    archiver: Archiver | None = None  # restores archived tasks (api/archive_routes.py)
    # How many workers consume a capability route (adapters/capable_workers.py).
    capable_workers: Callable[[Route], int | None] | None = None
    # Where upload steps with produces= publish their files (worker/artifacts.py).
    artifacts: ArtifactStore | None = None

    def send_command(self, command: msg.TaskCommand, message_id: str) -> None:
        """Durable in Kafka (acks=all) before the API answers 202; 503 within the submit
        timeout otherwise."""
        envelope = Envelope(payload=command, message_id=message_id, task_id=command.task_id,
                            correlation_id=command.task_id, causation_id=None,
                            occurred_at_ms=now_ms())
        try:
            # The producer's delivery timeout is the submit timeout (api/main.py), so a
            # failure here is final: the record can never arrive later.
            self.producer.send_envelope(self.codec, self.topics.task_commands, envelope)
        except Exception as error:
            log.warning("command %s not accepted by Kafka: %s", message_id, error)
            self.submit_gate.failed(self.producer.brokers_down)
            raise SubmitUnavailable(max(1, round(self.submit_gate.open_s)),
                                    "the message broker did not acknowledge it") from error
        self.submit_gate.succeeded()


def get_deps(request: Request) -> ApiDependencies:
    deps: ApiDependencies = request.app.state.deps
    return deps


Deps = Annotated[ApiDependencies, Depends(get_deps)]

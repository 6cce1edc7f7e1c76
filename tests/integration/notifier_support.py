"""What the notifier's integration tests share: a recording webhook receiver, envelopes of
task events, the delivery tables' rows, and a sender driven attempt by attempt.

The fixtures built on these (``receiver_factory``, ``schema_url``, ``schema_pool``) are in
``conftest.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from psycopg_pool import ConnectionPool

from tasksaga.adapters.url_guard import UrlGuard
from tasksaga.adapters.wire import Envelope
from tasksaga.core import events as ev
from tasksaga.notifier import rules
from tasksaga.notifier.pinned_http import PinnedPoster
from tasksaga.notifier.sender import Sender
from tasksaga.notifier.signature import verify

SECRET = "integration-secret-0123456789"
DEADLINE_S = 60.0


# -- a local webhook receiver ---------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """Answers 500 to the first ``failures`` POSTs of each delivery, then 200."""

    failures: int
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            delivery = headers.get("X-Tasksaga-Delivery")
            earlier = sum(1 for r in self.requests if r.headers.get("X-Tasksaga-Delivery")
                          == delivery)
            status = 500 if earlier < self.failures else 200
            self.requests.append(Received(headers, body, status))
            return status

    def of(self, delivery_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests
                    if r.headers.get("X-Tasksaga-Delivery") == delivery_id]


# -- helpers --------------------------------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def event(task_id: str, version: int, payload: object, task_type: str = "zip_archive") -> Envelope:
    return Envelope(
        payload=payload, message_id=f"{task_id}:{version}", task_id=task_id,
        correlation_id=task_id, causation_id=None, occurred_at_ms=1_714_564_800_000 + version,
        task_type=task_type, version=version,
    )


def submitted(task_id: str, version: int, url: str | None) -> Envelope:
    return event(task_id, version, ev.TaskSubmitted(
        task_id, "zip_archive", "{}", url, None, 1_714_564_800_000, None,
    ))


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {DEADLINE_S:.0f} s for {what}")
        time.sleep(0.05)


def attempts(pool: ConnectionPool, delivery_id: str) -> list[tuple[int, str, int | None]]:
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT attempt, outcome, status_code FROM webhook_deliveries"
            " WHERE delivery_id = %s ORDER BY attempt", (delivery_id,),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def pending(pool: ConnectionPool, task_id: str) -> list[str]:
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT delivery_id FROM pending_webhooks WHERE task_id = %s ORDER BY delivery_id",
            (task_id,),
        ).fetchall()
    return [r[0] for r in rows]


def assert_signed(request: Received, delivery_id: str) -> dict[str, object]:
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Tasksaga-Delivery"] == delivery_id
    assert verify(SECRET, request.headers["X-Tasksaga-Timestamp"], request.body,
                  request.headers["X-Tasksaga-Signature"])
    body = json.loads(request.body)
    assert isinstance(body, dict)
    return body


# These receivers listen on 127.0.0.1: let them through the SSRF guard (tested on its own in
# test_ssrf_webhooks.py).
LOCAL_RECEIVERS = ["127.0.0.1/32"]


def direct_sender(pool: ConnectionPool, url: str, max_attempts: int,
                  clock: Callable[[], int] = now_ms, lease_ms: int = 60_000) -> Sender:
    # base 0: every retry is due at once, so the test drives attempts with deliver_one().
    return Sender(
        pool=pool, database_url=url, poster=PinnedPoster(10.0), guard=UrlGuard(LOCAL_RECEIVERS),
        secret=SECRET,
        schedule=rules.webhook_retry_policy(max_attempts=max_attempts, base_ms=0, cap_ms=0),
        now_ms=clock, random=lambda: 0.5, stop=threading.Event(), lease_ms=lease_ms,
    )

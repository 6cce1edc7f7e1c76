"""The notifier's consumer and sender, driven attempt by attempt against the real Postgres:
retries until delivered, a redelivered event is not sent again, giving up after the last
attempt, a refused connection counted as a failed attempt.

Each test works in its own Postgres schema (``schema_url``, see conftest.py); waits are
bounded polls.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from psycopg_pool import ConnectionPool

from tasksaga.core import events as ev
from tasksaga.notifier.consumer import NotificationConsumer
from tests.integration.notifier_support import (
    Receiver,
    assert_signed,
    attempts,
    direct_sender,
    event,
    now_ms,
    pending,
    submitted,
)

pytestmark = pytest.mark.integration


def test_retries_until_delivered_and_a_redelivered_event_is_not_sent_again(
    schema_url: str, schema_pool: ConnectionPool,
    receiver_factory: Callable[[int], tuple[Receiver, str]],
) -> None:
    receiver, url = receiver_factory(2)
    consumer = NotificationConsumer(schema_pool, now_ms)
    sender = direct_sender(schema_pool, schema_url, max_attempts=8)
    task_id = f"task-{uuid.uuid4()}"
    finished = event(task_id, 3, ev.TaskCompleted('{"archive": "s3://b/a.zip"}', 1))

    consumer.handle(submitted(task_id, 1, url))
    consumer.handle(event(task_id, 2, ev.StepDispatched("zip", 1, "default", 1, 2)))
    consumer.handle(finished)
    consumer.handle(finished)  # redelivered while still queued
    assert pending(schema_pool, task_id) == [f"{task_id}:3"]

    assert [sender.deliver_one() for _ in range(4)] == [True, True, True, False]

    delivery_id = f"{task_id}:3"
    assert attempts(schema_pool, delivery_id) == [
        (1, "retrying", 500), (2, "retrying", 500), (3, "delivered", 200),
    ]
    assert pending(schema_pool, task_id) == []
    posts = receiver.of(delivery_id)
    assert [p.answered for p in posts] == [500, 500, 200]
    bodies = [assert_signed(p, delivery_id) for p in posts]
    assert all(p.body == posts[0].body for p in posts)  # the same bytes on every attempt
    assert bodies[0] == {
        "delivery_id": delivery_id, "task_id": task_id, "task_type": "zip_archive",
        "event_type": "TaskCompleted", "version": 3,
        "occurred_at": "2024-05-01T12:00:00.003Z", "status": "Completed", "step": None,
        "response": {"archive": "s3://b/a.zip"}, "reason": None, "error": None,
    }

    # Redelivered after it was delivered (the pending row is gone): still nothing new.
    consumer.handle(finished)
    assert pending(schema_pool, task_id) == []
    assert sender.deliver_one() is False
    assert len(receiver.of(delivery_id)) == 3


def test_gives_up_after_max_attempts_and_ignores_unsubscribed_tasks(
    schema_url: str, schema_pool: ConnectionPool,
    receiver_factory: Callable[[int], tuple[Receiver, str]],
) -> None:
    receiver, url = receiver_factory(1_000)
    consumer = NotificationConsumer(schema_pool, now_ms)
    sender = direct_sender(schema_pool, schema_url, max_attempts=3)
    task_id, silent_id = f"task-{uuid.uuid4()}", f"task-{uuid.uuid4()}"

    consumer.handle(submitted(silent_id, 1, None))
    consumer.handle(event(silent_id, 2, ev.TaskFailed("boom", 1)))
    consumer.handle(submitted(task_id, 1, url))
    consumer.handle(event(task_id, 2, ev.TaskFailed("step fetch failed", 1)))
    assert pending(schema_pool, silent_id) == []

    while sender.deliver_one():
        pass

    delivery_id = f"{task_id}:2"
    assert attempts(schema_pool, delivery_id) == [
        (1, "retrying", 500), (2, "retrying", 500), (3, "gave_up", 500),
    ]
    assert pending(schema_pool, task_id) == []
    body = assert_signed(receiver.of(delivery_id)[0], delivery_id)
    assert (body["event_type"], body["status"], body["reason"]) == (
        "TaskFailed", "Failed", "step fetch failed",
    )
    with schema_pool.connection() as conn:
        row = conn.execute("SELECT error FROM webhook_deliveries WHERE delivery_id = %s"
                           " AND attempt = 3", (delivery_id,)).fetchone()
    assert row == ("HTTP 500",)


def test_a_refused_connection_is_a_failed_attempt(
    schema_url: str, schema_pool: ConnectionPool
) -> None:
    # A port nothing listens on: bind one, note it, close it.
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as server:
        port = server.server_address[1]
    consumer = NotificationConsumer(schema_pool, now_ms)
    sender = direct_sender(schema_pool, schema_url, max_attempts=1)
    task_id = f"task-{uuid.uuid4()}"
    consumer.handle(submitted(task_id, 1, f"http://127.0.0.1:{port}/"))
    consumer.handle(event(task_id, 2, ev.TaskCancelled("asked", 1)))

    assert sender.deliver_one()

    with schema_pool.connection() as conn:
        row = conn.execute("SELECT outcome, status_code, error FROM webhook_deliveries"
                           " WHERE delivery_id = %s", (f"{task_id}:2",)).fetchone()
    # What the submitter sees is generic: the detail (the exception) goes to the log only.
    assert row == ("gave_up", None, "connection failed")

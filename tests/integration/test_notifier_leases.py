"""The notifier's sender holds no transaction across a webhook POST (issue 8, defect 1): the
delivery is leased in one short transaction and recorded in another, so a sender that dies
mid-POST loses nothing.

Each test works in its own Postgres schema (``schema_url``, see conftest.py); waits are
bounded polls.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from tasksaga.adapters.pg_store import open_pool
from tasksaga.core import events as ev
from tasksaga.notifier.consumer import NotificationConsumer
from tasksaga.notifier.sender import Sender
from tests.integration.http_receivers import QuietHandler, port_of, serving
from tests.integration.notifier_support import (
    DEADLINE_S,
    Receiver,
    attempts,
    direct_sender,
    event,
    now_ms,
    pending,
    submitted,
)

pytestmark = pytest.mark.integration


def test_no_transaction_is_open_while_a_webhook_post_is_in_flight(
    database_url: str, schema_url: str
) -> None:
    """A receiver holds the POST; meanwhile no session of the notifier's pool may be inside
    a transaction (one idling there holds back the horizon every projection reads below)."""
    application = f"tasksaga-notifier-{uuid.uuid4().hex[:8]}"
    pool = open_pool(schema_url, max_size=2, name=application)
    arrived, release = threading.Event(), threading.Event()

    class Blocking(QuietHandler):
        def do_POST(self) -> None:
            self.read_body()
            arrived.set()
            release.wait(DEADLINE_S)
            self.answer(200)

    with serving(Blocking) as server:
        task_id = f"task-{uuid.uuid4()}"
        consumer = NotificationConsumer(pool, now_ms)
        consumer.handle(submitted(task_id, 1, f"http://127.0.0.1:{port_of(server)}/h"))
        consumer.handle(event(task_id, 2, ev.TaskCompleted("{}", 1)))
        sender = direct_sender(pool, schema_url, max_attempts=1)
        worker = threading.Thread(target=sender.deliver_one)
        worker.start()
        try:
            assert arrived.wait(DEADLINE_S), "the receiver never got the POST"
            with psycopg.connect(database_url, autocommit=True) as conn:
                in_transaction = conn.execute(
                    "SELECT pid, state, now() - xact_start FROM pg_stat_activity"
                    " WHERE application_name = %s AND xact_start IS NOT NULL", (application,),
                ).fetchall()
        finally:
            release.set()
            worker.join(DEADLINE_S)
    print(f"notifier sessions inside a transaction during the POST = {len(in_transaction)}"
          f" {in_transaction}")
    assert in_transaction == []
    assert attempts(pool, f"{task_id}:2") == [(1, "delivered", 200)]
    pool.close()


def test_a_sender_that_dies_mid_post_loses_nothing(
    schema_url: str, schema_pool: ConnectionPool,
    receiver_factory: Callable[[int], tuple[Receiver, str]],
) -> None:
    """The lease replaces the row lock: a sender that claimed and died (no record) leaves the
    delivery due again when the lease expires, and a late record by it changes nothing."""
    receiver, url = receiver_factory(0)
    clock = [now_ms()]

    def leased_sender() -> Sender:
        return direct_sender(schema_pool, schema_url, max_attempts=8, clock=lambda: clock[0],
                             lease_ms=30_000)

    task_id = f"task-{uuid.uuid4()}"
    consumer = NotificationConsumer(schema_pool, now_ms)
    consumer.handle(submitted(task_id, 1, url))
    consumer.handle(event(task_id, 2, ev.TaskFailed("boom", 1)))
    clock[0] = now_ms()
    crashed, survivor = leased_sender(), leased_sender()
    lease = crashed.claim()
    assert lease is not None and lease.attempt == 1
    # ... and the crashed sender never records. The delivery is leased, not lost:
    assert survivor.deliver_one() is False
    assert pending(schema_pool, task_id) == [f"{task_id}:2"]
    clock[0] += 30_001  # the lease expires
    assert survivor.deliver_one() is True
    assert attempts(schema_pool, f"{task_id}:2") == [(2, "delivered", 200)]
    assert pending(schema_pool, task_id) == []
    # A zombie that comes back and records its stale lease cannot resurrect the delivery.
    crashed.attempt(lease)
    assert pending(schema_pool, task_id) == []
    assert survivor.deliver_one() is False
    assert len(receiver.of(f"{task_id}:2")) == 2  # at least once; receivers de-duplicate

"""The notifier's tables (004_notifier.sql, 003 webhook_deliveries): thin SQL, no decisions.

Every function runs on a connection the caller holds inside its own transaction, so the
caller decides what commits together.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from tasksaga.notifier.rules import Notify, Outcome

# NOTIFY'd in the transaction that queues a delivery (Postgres sends it at commit), so a
# sender wakes as soon as there is work instead of polling.
WEBHOOKS_CHANNEL = "tasksaga_webhooks"

# This service's name in the shared inbox table (processed_messages).
INBOX_CONSUMER = "notifier"


@dataclass(frozen=True)
class PendingWebhook:
    delivery_id: str
    task_id: str
    url: str
    event_type: str
    body: bytes
    attempt: int  # attempts already made


def upsert_subscription(conn: psycopg.Connection, task_id: str, url: str) -> None:
    conn.execute(
        "INSERT INTO webhook_subscriptions (task_id, url) VALUES (%s, %s)"
        " ON CONFLICT (task_id) DO UPDATE SET url = EXCLUDED.url",
        (task_id, url),
    )


def enqueue(conn: psycopg.Connection, notify: Notify, due_at_ms: int) -> bool:
    """Queue the delivery if the task is subscribed and the event is new; True if queued."""
    row = conn.execute(
        "SELECT url FROM webhook_subscriptions WHERE task_id = %s", (notify.task_id,)
    ).fetchone()
    if row is None:
        return False
    # The inbox record outlives the pending row: once a delivery is done its pending row is
    # deleted, and only this keeps a late redelivery of the same Kafka record (say, after a
    # crash before the offset commit) from sending the webhook a second time.
    claimed = conn.execute(
        "INSERT INTO processed_messages (consumer, message_id) VALUES (%s, %s)"
        " ON CONFLICT DO NOTHING",
        (INBOX_CONSUMER, notify.delivery_id),
    )
    if claimed.rowcount != 1:
        return False
    queued = conn.execute(
        "INSERT INTO pending_webhooks"
        " (delivery_id, task_id, url, event_type, body, attempt, next_attempt_at_ms)"
        " VALUES (%s, %s, %s, %s, %s, 0, %s) ON CONFLICT (delivery_id) DO NOTHING",
        (notify.delivery_id, notify.task_id, row[0], notify.event_type, notify.body, due_at_ms),
    )
    if queued.rowcount == 1:
        conn.execute(f"NOTIFY {WEBHOOKS_CHANNEL}")
    return queued.rowcount == 1


def claim_next(conn: psycopg.Connection, now_ms: int) -> PendingWebhook | None:
    """The most overdue delivery, locked until the caller's transaction ends.

    SKIP LOCKED: a delivery another sender (thread or replica) is POSTing is passed over, so
    the senders share the queue without ever sending one delivery twice at once.
    """
    row = conn.execute(
        "SELECT delivery_id, task_id, url, event_type, body, attempt FROM pending_webhooks"
        " WHERE next_attempt_at_ms <= %s ORDER BY next_attempt_at_ms LIMIT 1"
        " FOR UPDATE SKIP LOCKED",
        (now_ms,),
    ).fetchone()
    if row is None:
        return None
    return PendingWebhook(row[0], row[1], row[2], row[3], bytes(row[4]), row[5])


def next_due_ms(conn: psycopg.Connection) -> int | None:
    """When the next delivery nobody is working on falls due; None when there is none.

    Deliveries being POSTed (locked) are skipped: counting them would make an idle sender
    spin on a row it cannot claim.
    """
    with conn.transaction():
        row = conn.execute(
            "SELECT next_attempt_at_ms FROM pending_webhooks ORDER BY next_attempt_at_ms"
            " LIMIT 1 FOR KEY SHARE SKIP LOCKED"
        ).fetchone()
    return None if row is None else int(row[0])


def record_attempt(
    conn: psycopg.Connection,
    pending: PendingWebhook,
    attempt: int,
    status_code: int | None,
    outcome: Outcome,
    error: str | None,
) -> None:
    # DO NOTHING: should an attempt number ever repeat, a duplicate log row must not wedge
    # the delivery in a loop of failing transactions.
    conn.execute(
        "INSERT INTO webhook_deliveries"
        " (delivery_id, attempt, task_id, url, event_type, status_code, outcome, error)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (pending.delivery_id, attempt, pending.task_id, pending.url, pending.event_type,
         status_code, outcome.value, error),
    )


def reschedule(
    conn: psycopg.Connection, delivery_id: str, attempts_made: int, next_attempt_at_ms: int
) -> None:
    conn.execute(
        "UPDATE pending_webhooks SET attempt = %s, next_attempt_at_ms = %s"
        " WHERE delivery_id = %s",
        (attempts_made, next_attempt_at_ms, delivery_id),
    )


def remove(conn: psycopg.Connection, delivery_id: str) -> None:
    conn.execute("DELETE FROM pending_webhooks WHERE delivery_id = %s", (delivery_id,))

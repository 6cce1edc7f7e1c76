"""The notifier's tables (003, 004, 009_webhook_leases.sql): thin SQL, no decisions.

Every function runs on a connection the caller holds, so the caller decides what commits
together. None of them is ever called with a transaction open across network I/O: the
sender claims a lease, POSTs with no transaction, then records the outcome (sender.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg

from tasksaga.adapters.payload_crypto import PayloadCipher, column_context
from tasksaga.notifier.rules import Notify, Outcome

# The queued body holds the task's response: sealed at rest like the projections (pass the
# services' cipher; the default, plaintext, still refuses to hand on a sealed body).
PLAINTEXT = PayloadCipher(None)

# NOTIFY'd in the transaction that queues a delivery (Postgres sends it at commit), so a
# sender wakes as soon as there is work instead of polling.
WEBHOOKS_CHANNEL = "tasksaga_webhooks"

# This service's name in the shared inbox table (processed_messages).
INBOX_CONSUMER = "notifier"


@dataclass(frozen=True)
class Lease:
    """A delivery claimed by one sender for one attempt, until ``lease_token`` is released."""

    delivery_id: str
    task_id: str
    tenant: str
    receiver: str  # the URL's host: the unit of the per-receiver send bound
    url: str
    event_type: str
    body: bytes
    attempt: int  # the number of the attempt this lease is for (1-based)
    lease_token: str


def receiver_of(url: str) -> str:
    """The host a URL's deliveries go to, lower case ("" when there is none)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def upsert_subscription(conn: psycopg.Connection, task_id: str, url: str, tenant: str) -> None:
    conn.execute(
        "INSERT INTO webhook_subscriptions (task_id, url, tenant) VALUES (%s, %s, %s)"
        " ON CONFLICT (task_id) DO UPDATE SET url = EXCLUDED.url, tenant = EXCLUDED.tenant",
        (task_id, url, tenant),
    )


def _body_context(task_id: str, delivery_id: str) -> bytes:
    return column_context(task_id, "pending_webhooks.body", delivery_id)


def enqueue(conn: psycopg.Connection, notify: Notify, due_at_ms: int,
            cipher: PayloadCipher = PLAINTEXT) -> bool:
    """Queue the delivery if the task is subscribed and the event is new; True if queued."""
    row = conn.execute(
        "SELECT url, tenant FROM webhook_subscriptions WHERE task_id = %s", (notify.task_id,)
    ).fetchone()
    if row is None:
        return False
    url, tenant = row
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
        "INSERT INTO pending_webhooks (delivery_id, task_id, tenant, receiver, url, event_type,"
        " body, attempt, next_attempt_at_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s)"
        " ON CONFLICT (delivery_id) DO NOTHING",
        (notify.delivery_id, notify.task_id, tenant, receiver_of(url), url, notify.event_type,
         cipher.seal(notify.body.decode(), _body_context(notify.task_id, notify.delivery_id))
         .encode(), due_at_ms),
    )
    if queued.rowcount == 1:
        conn.execute(f"NOTIFY {WEBHOOKS_CHANNEL}")
    return queued.rowcount == 1


def claim(
    conn: psycopg.Connection,
    now_ms: int,
    lease_until_ms: int,
    lease_token: str,
    busy_receivers: Sequence[str] = (),
    busy_tenants: Sequence[str] = (),
    cipher: PayloadCipher = PLAINTEXT,
) -> Lease | None:
    """Lease the most overdue delivery whose receiver and tenant have a free slot.

    One statement, so on an autocommit connection one short transaction: the attempt is
    counted and the row is pushed to ``lease_until_ms``, when it falls due again unless the
    lease holder records its outcome first (the crash case). SKIP LOCKED lets senders claim
    side by side; the lease, not a row lock, keeps them off each other's deliveries after.
    """
    row = conn.execute(
        "UPDATE pending_webhooks SET attempt = attempt + 1, lease_token = %s,"
        " next_attempt_at_ms = %s WHERE delivery_id = ("
        "  SELECT delivery_id FROM pending_webhooks WHERE next_attempt_at_ms <= %s"
        "  AND receiver <> ALL(%s::text[]) AND tenant <> ALL(%s::text[])"
        "  ORDER BY next_attempt_at_ms LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING delivery_id, task_id, tenant, receiver, url, event_type, body, attempt",
        (lease_token, lease_until_ms, now_ms, list(busy_receivers), list(busy_tenants)),
    ).fetchone()
    if row is None:
        return None
    body = cipher.open(bytes(row[6]).decode(), _body_context(row[1], row[0])).encode()
    return Lease(row[0], row[1], row[2], row[3], row[4], row[5], body, row[7], lease_token)


def next_due_ms(
    conn: psycopg.Connection, busy_receivers: Sequence[str] = (), busy_tenants: Sequence[str] = ()
) -> int | None:
    """When the next delivery a sender could claim falls due; None when there is none.

    Leased deliveries count at their lease's expiry, which is when they could be claimed.
    """
    row = conn.execute(
        "SELECT min(next_attempt_at_ms) FROM pending_webhooks"
        " WHERE receiver <> ALL(%s::text[]) AND tenant <> ALL(%s::text[])",
        (list(busy_receivers), list(busy_tenants)),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def record_attempt(
    conn: psycopg.Connection,
    lease: Lease,
    status_code: int | None,
    outcome: Outcome,
    error: str | None,
) -> None:
    # ``error`` is generic (it is shown to the submitter). DO NOTHING: should an attempt
    # number ever repeat, a duplicate log row must not wedge the delivery in a loop of
    # failing transactions.
    conn.execute(
        "INSERT INTO webhook_deliveries (delivery_id, attempt, task_id, tenant, url,"
        " event_type, status_code, outcome, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (lease.delivery_id, lease.attempt, lease.task_id, lease.tenant, lease.url,
         lease.event_type, status_code, outcome.value, error),
    )


def release(conn: psycopg.Connection, lease: Lease, next_attempt_at_ms: int) -> bool:
    """Give the delivery back for a retry at ``next_attempt_at_ms``; False if the lease was
    lost (it expired and another sender holds the delivery now)."""
    return conn.execute(
        "UPDATE pending_webhooks SET lease_token = NULL, next_attempt_at_ms = %s"
        " WHERE delivery_id = %s AND lease_token = %s",
        (next_attempt_at_ms, lease.delivery_id, lease.lease_token),
    ).rowcount == 1


def finish(conn: psycopg.Connection, lease: Lease) -> bool:
    """Remove a delivered or given-up delivery; False if the lease was lost."""
    return conn.execute(
        "DELETE FROM pending_webhooks WHERE delivery_id = %s AND lease_token = %s",
        (lease.delivery_id, lease.lease_token),
    ).rowcount == 1

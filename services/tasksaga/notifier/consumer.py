"""The notifier's handling of one task event: decide (rules.plan), then write in one transaction.

Nothing is POSTed here: the consumer only records a subscription or queues a delivery, so a
slow receiver never holds up the event stream, and a crash loses nothing (Kafka redelivers;
the queue is keyed by message id and the inbox makes the redelivery a no-op).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from psycopg_pool import ConnectionPool

from tasksaga.adapters.kafka_bus import Unprocessable
from tasksaga.adapters.payload_crypto import PayloadCipher
from tasksaga.adapters.wire import Envelope
from tasksaga.notifier import rules, store

log = logging.getLogger(__name__)


class NotificationConsumer:
    def __init__(self, pool: ConnectionPool, now_ms: Callable[[], int],
                 cipher: PayloadCipher = store.PLAINTEXT) -> None:
        self._pool = pool
        self._now_ms = now_ms
        self._cipher = cipher  # seals the queued bodies (they hold the response)

    def handle(self, envelope: Envelope) -> None:
        action = rules.plan(envelope)
        if isinstance(action, rules.Refuse):
            raise Unprocessable(action.reason)
        if isinstance(action, rules.Ignore):
            if action.reason:
                log.warning("not notifying: %s", action.reason)
            return
        with self._pool.connection() as conn, conn.transaction():
            if isinstance(action, rules.Subscribe):
                store.upsert_subscription(conn, action.task_id, action.url, action.tenant)
                return
            if store.enqueue(conn, action, due_at_ms=self._now_ms(), cipher=self._cipher):
                log.debug("queued %s %s for task %s", action.event_type, action.delivery_id,
                          action.task_id)

"""Publishes committed outbox records to Kafka, then deletes them.

One relay publishes at a time (a transaction-scoped advisory lock), in outbox order. A crash
after the broker acknowledged but before the delete re-sends the batch: consumers dedupe by
message id. Records are never deleted before the broker acknowledged them.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable

import psycopg
from psycopg_pool import ConnectionPool

from tasksaga.adapters import faults
from tasksaga.adapters.kafka_bus import KafkaProducer

log = logging.getLogger(__name__)
_LOCK_KEY = 7_201_503


class OutboxRelay:
    def __init__(
        self, pool: ConnectionPool, producer: KafkaProducer, topic_prefix: str,
        batch_size: int = 500,
    ) -> None:
        self._pool = pool
        self._producer = producer
        # Only this deployment's records: several deployments (topic prefixes) may share a
        # database, and one must never publish, or be blocked by, another's records.
        self._topic_pattern = topic_prefix.replace("_", r"\_").replace("%", r"\%") + ".%"
        self._lock_key = _LOCK_KEY ^ zlib.crc32(topic_prefix.encode())
        self._batch_size = batch_size

    def publish_pending(self) -> int:
        with self._pool.connection() as conn, conn.transaction():
            locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)",
                                  (self._lock_key,)).fetchone()
            if not locked or not locked[0]:
                return 0
            rows = conn.execute(
                "SELECT id, topic, key, value, headers FROM outbox WHERE topic LIKE %s"
                " ORDER BY id LIMIT %s",
                (self._topic_pattern, self._batch_size),
            ).fetchall()
            if not rows:
                return 0
            for _id, topic, key, value, headers in rows:
                self._producer.produce(
                    topic,
                    bytes(key) if key is not None else None,
                    bytes(value),
                    [(k, v.encode("latin-1")) for k, v in headers],
                )
            self._producer.flush()
            faults.hit("after_produce_before_delete")  # chaos suite (R1, R13); no-op unless armed
            conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", ([r[0] for r in rows],))
            return len(rows)


def run_on_notify(
    database_url: str,
    channel: str,
    work: Callable[[], int],
    stop: threading.Event,
    idle_wait_s: float = 1.0,
    name: str = "worker",
) -> None:
    """Call ``work`` until it returns 0, then sleep until NOTIFY on ``channel`` or a timeout.

    The timeout bounds how stale things get when a notification is lost (e.g. across a
    reconnect); it is not the normal path.
    """
    while not stop.is_set():
        try:
            with psycopg.connect(database_url, autocommit=True,
                                 application_name=f"tasksaga-{name}-listen") as listener:
                listener.execute(f"LISTEN {channel}")
                while not stop.is_set():
                    while work() and not stop.is_set():
                        pass
                    for _ in listener.notifies(timeout=idle_wait_s, stop_after=1):
                        pass
        except Exception:
            log.exception("%s loop failed; restarting in 1 s", name)
            stop.wait(1.0)


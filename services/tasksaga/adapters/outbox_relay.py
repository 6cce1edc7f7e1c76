"""Publishes committed outbox records to Kafka, then deletes them.

Where the orchestrator publishes its own records as they commit (outbox_publisher.py), this
relay only sweeps: rows older than its sweep age (a record whose direct send failed, or a
process that died before its rows were deleted), and every row when it starts.

No transaction is open while records travel to the broker: the relay claims a batch in one
short transaction, produces and waits for the acknowledgements with no transaction open, and
settles the batch in another short transaction. One relay of a deployment publishes at a time
(a session-level advisory lock, held by the relay's connection between transactions, released
when it ends or its session dies), in outbox order.

At least once: rows are deleted only after the broker acknowledged them, so a crash between
the acknowledgement and the delete re-sends them; consumers dedupe by message id.

Order per key: the idempotent producer keeps a partition's records in order. When a record
fails for a reason that may pass (a timeout, the broker unavailable), it stays, and so do the
later records of its key even when they were acknowledged: the next round sends them again
after it, so the key's last copies arrive in order.

One bad record never blocks the others: a record the broker refuses for good (larger than its
limit, invalid) is dead-lettered. Its row moves to ``outbox_dead_letters`` whole, and a dead
letter with the reason and the original bytes (cut to ``dead_letter_value_bytes`` when too
large) goes to the dead-letter topic through the outbox itself, in the same transaction.
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from collections.abc import Callable
from datetime import datetime

import psycopg
from confluent_kafka import KafkaError
from psycopg_pool import ConnectionPool

from tasksaga.adapters import faults
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.clock import now_ms
from tasksaga.adapters.kafka_bus import Delivery, KafkaProducer
from tasksaga.adapters.wire import DeadLetter, Envelope, Topics

log = logging.getLogger(__name__)
_LOCK_KEY = 7_201_503
RELAY_GROUP = "outbox-relay"
DEFAULT_DEAD_LETTER_VALUE_BYTES = 256 * 1024

# Refusals that sending again cannot cure: the record itself is wrong for the broker.
_PERMANENT = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_MSG,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.INVALID_RECORD,
    KafkaError.INVALID_REQUIRED_ACKS,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.TOPIC_EXCEPTION,
    KafkaError.POLICY_VIOLATION,
    KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
})

Row = tuple[int, str, bytes | None, bytes, list[list[str]], datetime]


def is_permanent(delivery: Delivery) -> bool:
    error = delivery.error
    return error is not None and error.code in _PERMANENT


class OutboxRelay:
    def __init__(
        self, pool: ConnectionPool, producer: KafkaProducer, topic_prefix: str,
        codec: AvroCodec, batch_size: int = 500,
        dead_letter_value_bytes: int = DEFAULT_DEAD_LETTER_VALUE_BYTES,
        clock: Callable[[], int] = now_ms,
        sweep_age_s: float = 0.0,
    ) -> None:
        if batch_size <= 0 or dead_letter_value_bytes <= 0:
            raise ValueError("batch_size and dead_letter_value_bytes must be positive")
        if sweep_age_s < 0:
            raise ValueError(f"sweep_age_s must not be negative, got {sweep_age_s}")
        # With an OutboxPublisher sending rows as they commit, the relay only sweeps what it
        # left behind: rows older than this. Its first rounds take every row (a process that
        # died left them; a live one's in flight may be sent twice, deduped downstream).
        self._sweep_age_s = sweep_age_s
        self._started = False
        self._pool = pool
        self._producer = producer
        self._codec = codec
        # Only this deployment's records: several deployments (topic prefixes) may share a
        # database, and one must never publish, or be blocked by, another's records.
        self._topic_pattern = topic_prefix.replace("_", r"\_").replace("%", r"\%") + ".%"
        self._dead_letter_topic = Topics(topic_prefix).dead_letter
        self._lock_key = _LOCK_KEY ^ zlib.crc32(topic_prefix.encode())
        self._batch_size = batch_size
        self._dead_letter_value_bytes = dead_letter_value_bytes
        self._clock = clock

    def publish_pending(self) -> int:
        """Publish one batch; returns how many rows it settled (published or dead-lettered)."""
        with self._pool.connection() as conn:
            with conn.transaction():
                locked = conn.execute("SELECT pg_try_advisory_lock(%s)",
                                      (self._lock_key,)).fetchone()
            if not locked or not locked[0]:
                return 0
            try:
                settled = self._publish_batch(conn, self._sweep_age_s if self._started else 0.0)
                self._started = self._started or settled == 0
                return settled
            finally:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_unlock(%s)", (self._lock_key,))

    def _publish_batch(self, conn: psycopg.Connection, min_age_s: float) -> int:
        with conn.transaction():
            rows: list[Row] = conn.execute(
                "SELECT id, topic, key, value, headers, created_at FROM outbox"
                " WHERE topic LIKE %s AND created_at <= now() - make_interval(secs => %s)"
                " ORDER BY id LIMIT %s",
                (self._topic_pattern, min_age_s, self._batch_size),
            ).fetchall()
        if not rows:
            return 0
        # No transaction is open from here until the acknowledgements are in.
        deliveries = [self._produce(row) for row in rows]
        # Outlasts the producer's delivery timeout, so every record has its report.
        self._producer.flush(self._producer.delivery_timeout_s + 5.0, raise_on_error=False)
        faults.hit("after_produce_before_delete")
        acked: list[int] = []
        refused: list[tuple[Row, str]] = []
        held_keys: set[bytes | None] = set()  # keys with a record that must be sent again
        for row, first in zip(rows, deliveries, strict=True):
            key = None if row[2] is None else bytes(row[2])
            # The broker refuses a partition's whole produce request when one record in it is
            # too large, so a refusal names a suspect, not a culprit: send it again alone.
            delivery = self._send_alone(row) if is_permanent(first) else first
            if is_permanent(delivery):
                refused.append((row, str(delivery.error)))
            elif delivery.settled and delivery.error is None and key not in held_keys:
                acked.append(row[0])
            else:
                held_keys.add(key)
                if delivery.error is not None or not delivery.settled:
                    log.warning("outbox row %d to %s not acknowledged, sent again next round: %s",
                                row[0], row[1], delivery.error or "no delivery report")
        with conn.transaction():
            if acked:
                conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (acked,))
            for row, reason in refused:
                self._dead_letter(conn, row, reason)
        return len(acked) + len(refused)

    def _produce(self, row: Row) -> Delivery:
        _id, topic, key, value, headers, _created = row
        return self._producer.produce(
            topic, bytes(key) if key is not None else None, bytes(value),
            [(k, v.encode("latin-1")) for k, v in headers],
        )

    def _send_alone(self, row: Row) -> Delivery:
        delivery = self._produce(row)
        self._producer.flush(self._producer.delivery_timeout_s + 5.0, raise_on_error=False)
        return delivery

    def _dead_letter(self, conn: psycopg.Connection, row: Row, reason: str) -> None:
        """Move a refused row out of the outbox; a dead letter naming it takes its place."""
        row_id, topic, key, value, headers, created_at = row
        log.error("outbox row %d to %s (%d bytes) refused by the broker, dead-lettered: %s",
                  row_id, topic, len(value), reason)
        conn.execute(
            "INSERT INTO outbox_dead_letters (id, topic, key, value, headers, reason, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (row_id, topic, key, value, json.dumps(headers), reason, created_at),
        )
        conn.execute("DELETE FROM outbox WHERE id = %s", (row_id,))
        if topic == self._dead_letter_topic:
            return  # a refused dead letter: the table row is the record, no second letter
        original = bytes(value)
        cap = self._dead_letter_value_bytes
        if len(original) > cap:
            reason += (f"; value cut to its first {cap} of {len(original)} bytes, the whole"
                       f" record is row {row_id} of outbox_dead_letters")
        letter = DeadLetter(
            source_topic=topic, source_partition=-1, source_offset=row_id,
            consumer_group=RELAY_GROUP, reason=reason,
            key=None if key is None else bytes(key), value=original[:cap],
            failed_at_ms=self._clock(),
            headers={str(name): str(raw) for name, raw in headers},
        )
        envelope = Envelope(
            payload=letter, message_id=f"dlq:outbox:{row_id}",
            task_id=letter.key.decode("utf-8", "replace") if letter.key else "",
            correlation_id="", causation_id=None, occurred_at_ms=letter.failed_at_ms,
        )
        conn.execute(
            "INSERT INTO outbox (topic, key, value, headers) VALUES (%s, %s, %s, '[]')",
            (self._dead_letter_topic, letter.key, self._codec.encode(envelope)),
        )


def run_on_notify(
    database_url: str,
    channel: str,
    work: Callable[[], int],
    stop: threading.Event,
    idle_wait_s: float = 1.0,
    name: str = "worker",
    gather_s: float = 0.0,
) -> None:
    """Call ``work`` until it returns 0, then sleep until NOTIFY on ``channel`` or a timeout.

    The timeout bounds how stale things get when a notification is lost (e.g. across a
    reconnect); it is not the normal path. Every notification that arrived meanwhile is
    taken at once: one round of work answers them all. ``gather_s``: after a wake-up, wait
    this long first, so the work of many commits is done in one round (larger batches, fewer
    transactions, at the cost of that much staleness).
    """
    while not stop.is_set():
        try:
            with psycopg.connect(database_url, autocommit=True,
                                 application_name=f"tasksaga-{name}-listen") as listener:
                listener.execute(f"LISTEN {channel}")
                while not stop.is_set():
                    while work() and not stop.is_set():
                        pass
                    woken = False
                    for _ in listener.notifies(timeout=idle_wait_s, stop_after=1):
                        woken = True
                    if woken and gather_s > 0:
                        stop.wait(gather_s)
                    for _ in listener.notifies(timeout=0):  # the ones queued meanwhile
                        pass
        except Exception:
            log.exception("%s loop failed; restarting in 1 s", name)
            stop.wait(1.0)

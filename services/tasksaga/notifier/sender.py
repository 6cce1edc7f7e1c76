"""The sender: leases due deliveries, POSTs them concurrently, records each attempt.

No transaction is ever open during a POST (a transaction idling across network I/O holds
back the cluster-wide horizon the projector reads below, issue 8). Each attempt is three
steps:

1. **claim** — one short transaction (``store.claim``) leases the most overdue delivery
   whose receiver host and tenant have a free slot, counts the attempt, and pushes the row
   to the lease's expiry;
2. **send** — with no transaction open: the URL guard vets the callback URL again (its
   name may resolve elsewhere now), and ``PinnedPoster`` POSTs to the vetted addresses
   within ``TASKSAGA_WEBHOOK_TIMEOUT_S`` in all;
3. **record** — a second short transaction logs the attempt and reschedules or removes the
   delivery, only while this sender still holds the lease.

A crash between 1 and 3 loses nothing: the row falls due again when the lease expires and
another sender delivers it (at least once; receivers de-duplicate on the delivery id).

Concurrency (``Limits``): at most ``total`` deliveries in flight, ``per_receiver`` to one host
and ``per_tenant`` for one tenant. A receiver that takes 30 s occupies only its own slots:
the claim skips hosts and tenants whose slots are full, so everyone else's deliveries go on.
The bounds are per notifier process.

Waiting: a listener thread LISTENs on the channel the consumer NOTIFYs; the dispatcher also
wakes when a delivery finishes, at the next due time, and at least every ``max_wait_s`` —
never a busy poll.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import psycopg
from opentelemetry import metrics
from psycopg_pool import ConnectionPool

from tasksaga.adapters import telemetry
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import KafkaProducer
from tasksaga.adapters.url_guard import UnresolvedHost, UnsafeUrl, UrlGuard, VettedUrl
from tasksaga.adapters.wire import Envelope, Topics, WebhookDelivery
from tasksaga.core.retry import RetryPolicy
from tasksaga.notifier import rules, store
from tasksaga.notifier.pinned_http import CONNECTION_FAILED, REFUSED_BY_POLICY, PostResult

log = logging.getLogger(__name__)
# By outcome (delivered, retrying, ...) and event type: never by receiver or tenant.
_WEBHOOK_ATTEMPTS = metrics.get_meter("tasksaga.notifier").create_counter(
    "tasksaga.webhook.attempts", description="webhook POST attempts by outcome and event type")

PUBLISH_FLUSH_TIMEOUT_S = 5.0


class Poster(Protocol):
    def post(self, vetted: VettedUrl, body: bytes, headers: Mapping[str, str]) -> PostResult:
        ...


@dataclass(frozen=True)
class Limits:
    total: int = 16
    per_receiver: int = 4
    per_tenant: int = 8

    def __post_init__(self) -> None:
        for name in ("total", "per_receiver", "per_tenant"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be >= 1, got {getattr(self, name)}")


class _Slots:
    """Deliveries in flight, by receiver host and by tenant (taken by the dispatcher thread,
    given back by the delivery threads)."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._receivers: Counter[str] = Counter()
        self._tenants: Counter[str] = Counter()
        self._total = 0

    def has_room(self) -> bool:
        with self._lock:
            return self._total < self._limits.total

    def full(self) -> tuple[list[str], list[str]]:
        """The receivers and tenants that cannot take another delivery now."""
        with self._lock:
            return ([r for r, n in self._receivers.items() if n >= self._limits.per_receiver],
                    [t for t, n in self._tenants.items() if n >= self._limits.per_tenant])

    def take(self, lease: store.Lease) -> None:
        with self._lock:
            self._receivers[lease.receiver] += 1
            self._tenants[lease.tenant] += 1
            self._total += 1

    def give(self, lease: store.Lease) -> None:
        with self._lock:
            self._receivers[lease.receiver] -= 1
            self._tenants[lease.tenant] -= 1
            self._total -= 1
            self._receivers += Counter()  # drops the zero counts
            self._tenants += Counter()


class Sender:
    def __init__(
        self,
        pool: ConnectionPool,
        database_url: str,
        poster: Poster,
        guard: UrlGuard,
        secret: str,
        schedule: RetryPolicy,
        now_ms: Callable[[], int],
        random: Callable[[], float],
        stop: threading.Event,
        producer: KafkaProducer | None = None,
        codec: AvroCodec | None = None,
        topics: Topics | None = None,
        limits: Limits | None = None,
        lease_ms: int = 60_000,
        max_wait_s: float = 1.0,
    ) -> None:
        if lease_ms <= 0:
            raise ValueError(f"lease_ms must be > 0, got {lease_ms}")
        self._pool = pool
        self._database_url = database_url
        self._poster = poster
        self._guard = guard
        self._secret = secret
        self._schedule = schedule
        self._now_ms = now_ms
        self._random = random
        self._stop = stop
        self._producer = producer
        self._codec = codec
        self._topics = topics
        self._limits = limits or Limits()
        self._lease_ms = lease_ms
        self._max_wait_s = max_wait_s
        self._wake = threading.Event()

    # -- one attempt: claim, send, record -----------------------------------------------------

    def claim(self, busy_receivers: list[str] | None = None,
              busy_tenants: list[str] | None = None) -> store.Lease | None:
        now = self._now_ms()
        # One statement; the pool commits it as the block ends: a short transaction.
        with self._pool.connection() as conn:
            return store.claim(conn, now, now + self._lease_ms, uuid.uuid4().hex,
                               busy_receivers or [], busy_tenants or [],
                               self._codec.cipher if self._codec else store.PLAINTEXT)

    def attempt(self, lease: store.Lease) -> rules.Verdict:
        """Vet, POST and record one leased attempt. No transaction is open while it sends."""
        with telemetry.span("notifier POST", delivery_id=lease.delivery_id,
                            task_id=lease.task_id):
            result, retryable = self._send(lease)
        verdict = rules.judge(self._schedule, lease.attempt, result.status_code,
                              self._now_ms(), self._random(), retryable=retryable)
        _WEBHOOK_ATTEMPTS.add(1, {"outcome": verdict.outcome.value,
                                  "event_type": lease.event_type})
        with self._pool.connection() as conn, conn.transaction():
            store.record_attempt(conn, lease, result.status_code, verdict.outcome, result.error)
            if verdict.next_attempt_at_ms is not None:
                held = store.release(conn, lease, verdict.next_attempt_at_ms)
            else:
                held = store.finish(conn, lease)
        if not held:
            log.warning("the lease of %s (attempt %d) expired before its outcome was recorded;"
                        " another sender owns the delivery now", lease.delivery_id,
                        lease.attempt)
        self._log(lease, result, verdict)
        self._publish(lease, result, verdict)
        return verdict

    def deliver_one(self) -> bool:
        """Claim and make one attempt at the most overdue delivery; False when none is due."""
        lease = self.claim()
        if lease is None:
            return False
        self.attempt(lease)
        return True

    def _send(self, lease: store.Lease) -> tuple[PostResult, bool]:
        """The attempt's result, and whether a failure is worth retrying."""
        try:
            vetted = self._guard.vet(lease.url)
        except UnresolvedHost as error:  # DNS may answer again later: retry
            return PostResult(None, CONNECTION_FAILED, error.reason), True
        except UnsafeUrl as error:
            return PostResult(None, REFUSED_BY_POLICY, error.reason), False
        headers = rules.delivery_headers(self._secret, lease.delivery_id,
                                         self._now_ms() // 1000, lease.body)
        return self._poster.post(vetted, lease.body, headers), True

    def _log(self, lease: store.Lease, result: PostResult, verdict: rules.Verdict) -> None:
        # The detail may name internal addresses: logs only, never the delivery record.
        why = result.detail or result.error
        if verdict.outcome is rules.Outcome.DELIVERED:
            log.info("delivered %s (%s, task %s) on attempt %d", lease.delivery_id,
                     lease.event_type, lease.task_id, lease.attempt)
        elif verdict.outcome is rules.Outcome.RETRYING:
            log.info("attempt %d of %s failed (%s); retrying", lease.attempt,
                     lease.delivery_id, why)
        else:
            log.warning("gave up on %s (%s, task %s) after attempt %d: %s", lease.delivery_id,
                        lease.event_type, lease.task_id, lease.attempt, why)

    def _publish(self, lease: store.Lease, result: PostResult, verdict: rules.Verdict) -> None:
        # After the commit, best effort: webhook_deliveries (the table) is the record of
        # attempts; this message only lets others watch them. A lost produce is acceptable,
        # and producing before the commit could announce an attempt that was rolled back.
        if self._producer is None or self._codec is None or self._topics is None:
            return
        done_ms = self._now_ms()
        delivery = WebhookDelivery(
            delivery_id=lease.delivery_id, task_id=lease.task_id, url=lease.url,
            event_type=lease.event_type, attempt=lease.attempt, status_code=result.status_code,
            outcome=verdict.outcome.value, error=result.error, delivered_at_ms=done_ms,
        )
        envelope = Envelope(
            payload=delivery,
            message_id=f"{delivery.delivery_id}:attempt:{delivery.attempt}",
            task_id=delivery.task_id,
            correlation_id=delivery.task_id,
            causation_id=delivery.delivery_id,
            occurred_at_ms=done_ms,
        )
        try:
            self._producer.produce(
                self._topics.webhook_deliveries, delivery.task_id.encode(),
                self._codec.encode(envelope), telemetry.inject_headers(),
            )
            self._producer.flush(PUBLISH_FLUSH_TIMEOUT_S)
        except Exception as error:
            log.warning("could not publish the delivery record of %s: %s",
                        delivery.delivery_id, error)

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        """Dispatch deliveries until ``stop`` is set; in-flight ones finish (bounded by the
        POST deadline) before it returns."""
        slots = _Slots(self._limits)
        listener = threading.Thread(target=self._listen, name="webhook-listen", daemon=True)
        listener.start()
        with ThreadPoolExecutor(self._limits.total, thread_name_prefix="webhook-send") as pool:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    wait_s = self._dispatch(slots, pool)
                except Exception:
                    # Keep dispatching through a database outage: the queue is durable, and
                    # delivery resumes once Postgres answers again.
                    log.exception("webhook dispatch failed; retrying")
                    wait_s = self._max_wait_s
                self._wake.wait(wait_s)
        listener.join(self._max_wait_s + 1.0)

    def _dispatch(self, slots: _Slots, pool: ThreadPoolExecutor) -> float:
        """Start every claimable delivery there is room for; how long to wait after."""
        while slots.has_room() and not self._stop.is_set():
            busy_receivers, busy_tenants = slots.full()
            lease = self.claim(busy_receivers, busy_tenants)
            if lease is None:
                break
            slots.take(lease)
            pool.submit(self._attempt_in_slot, lease, slots)
        if not slots.has_room():
            return self._max_wait_s  # a finishing delivery wakes the loop
        with self._pool.connection() as conn:
            due_ms = store.next_due_ms(conn, *slots.full())
        if due_ms is None:
            return self._max_wait_s
        return min(max(due_ms - self._now_ms(), 0) / 1000, self._max_wait_s)

    def _attempt_in_slot(self, lease: store.Lease, slots: _Slots) -> None:
        try:
            self.attempt(lease)
        except Exception:
            log.exception("attempt %d of %s failed before its outcome was recorded; it is"
                          " retried when its lease expires", lease.attempt, lease.delivery_id)
        finally:
            slots.give(lease)
            self._wake.set()

    def _listen(self) -> None:
        """Wake the dispatcher on every NOTIFY of a queued delivery, until stopped."""
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._database_url, autocommit=True,
                                     application_name="tasksaga-notifier-listen") as conn:
                    conn.execute(f"LISTEN {store.WEBHOOKS_CHANNEL}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=self._max_wait_s, stop_after=1):
                            self._wake.set()
            except psycopg.Error as error:
                log.warning("LISTEN connection lost (%s); waking every %.1f s until it is back",
                            error, self._max_wait_s)
                self._stop.wait(self._max_wait_s)

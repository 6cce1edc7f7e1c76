"""The sender: claims due deliveries, POSTs them, records each attempt, reschedules or ends.

The shell around ``rules.judge`` and ``rules.delivery_headers``. One delivery per
transaction: the row stays locked (FOR UPDATE SKIP LOCKED) while its POST is in flight, so
no other sender picks it up, and if this process dies mid-POST the lock goes with the
connection and another sender retries it (at least once; receivers de-duplicate by
X-Tasksaga-Delivery). The transaction idles for at most the POST timeout, so Postgres's
idle_in_transaction_session_timeout, if set, must be longer than TASKSAGA_WEBHOOK_TIMEOUT_S.

Waiting: LISTEN on the channel the consumer NOTIFYs, bounded by the next due time and by
``max_wait_s`` (which also covers retries rescheduled by other replicas and a missed
notification) — never a busy poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import psycopg
from psycopg_pool import ConnectionPool

from tasksaga.adapters import telemetry
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import KafkaProducer
from tasksaga.adapters.wire import Envelope, Topics, WebhookDelivery
from tasksaga.core.retry import RetryPolicy
from tasksaga.notifier import rules, store

log = logging.getLogger(__name__)

USER_AGENT = "tasksaga-notifier/1"
MAX_ERROR_LENGTH = 500
PUBLISH_FLUSH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class PostResult:
    status_code: int | None  # None: no HTTP response (timeout, connection error, bad URL)
    error: str | None


Post = Callable[[str, bytes, dict[str, str]], PostResult]


def http_client(timeout_s: float) -> httpx.Client:
    # No redirects: a 3xx is a failed attempt, never a POST of the signed body to a URL the
    # task's submitter did not choose. The timeout applies to each phase (connect, write,
    # waiting for the response head).
    return httpx.Client(
        timeout=httpx.Timeout(timeout_s), follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


def http_post(client: httpx.Client) -> Post:
    def post(url: str, body: bytes, headers: dict[str, str]) -> PostResult:
        try:
            # Streamed and never read: only the status matters, whatever the receiver sends.
            with client.stream("POST", url, content=body, headers=headers) as response:
                code = response.status_code
                return PostResult(code, None if rules.succeeded(code) else f"HTTP {code}")
        except httpx.TimeoutException as error:
            return PostResult(None, f"timeout ({type(error).__name__})")
        except Exception as error:  # any failure to POST is a failed attempt, never a crash
            return PostResult(None, f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH])

    return post


class Sender:
    def __init__(
        self,
        pool: ConnectionPool,
        database_url: str,
        post: Post,
        secret: str,
        schedule: RetryPolicy,
        now_ms: Callable[[], int],
        random: Callable[[], float],
        stop: threading.Event,
        producer: KafkaProducer | None = None,
        codec: AvroCodec | None = None,
        topics: Topics | None = None,
        max_wait_s: float = 1.0,
    ) -> None:
        self._pool = pool
        self._database_url = database_url
        self._post = post
        self._secret = secret
        self._schedule = schedule
        self._now_ms = now_ms
        self._random = random
        self._stop = stop
        self._producer = producer
        self._codec = codec
        self._topics = topics
        self._max_wait_s = max_wait_s

    # -- one delivery attempt -----------------------------------------------------------------

    def deliver_one(self) -> bool:
        """Make one attempt at the most overdue delivery; False when none is due."""
        with self._pool.connection() as conn, conn.transaction():
            pending = store.claim_next(conn, self._now_ms())
            if pending is None:
                return False
            attempt = pending.attempt + 1
            with telemetry.span("notifier POST", delivery_id=pending.delivery_id,
                                task_id=pending.task_id):
                headers = rules.delivery_headers(
                    self._secret, pending.delivery_id, self._now_ms() // 1000, pending.body
                )
                result = self._post(pending.url, pending.body, headers)
            done_ms = self._now_ms()
            verdict = rules.judge(
                self._schedule, attempt, result.status_code, done_ms, self._random()
            )
            store.record_attempt(conn, pending, attempt, result.status_code, verdict.outcome,
                                 result.error)
            if verdict.next_attempt_at_ms is not None:
                store.reschedule(conn, pending.delivery_id, attempt, verdict.next_attempt_at_ms)
            else:
                store.remove(conn, pending.delivery_id)
        self._log(pending, attempt, result, verdict)
        self._publish(WebhookDelivery(
            delivery_id=pending.delivery_id, task_id=pending.task_id, url=pending.url,
            event_type=pending.event_type, attempt=attempt, status_code=result.status_code,
            outcome=verdict.outcome.value, error=result.error, delivered_at_ms=done_ms,
        ))
        return True

    def _log(self, pending: store.PendingWebhook, attempt: int, result: PostResult,
             verdict: rules.Verdict) -> None:
        if verdict.outcome is rules.Outcome.DELIVERED:
            log.info("delivered %s (%s, task %s) on attempt %d", pending.delivery_id,
                     pending.event_type, pending.task_id, attempt)
        elif verdict.outcome is rules.Outcome.RETRYING:
            log.info("attempt %d of %s failed (%s); retrying", attempt, pending.delivery_id,
                     result.error)
        else:
            log.warning("gave up on %s (%s, task %s) after %d attempts; last error: %s",
                        pending.delivery_id, pending.event_type, pending.task_id, attempt,
                        result.error)

    def _publish(self, delivery: WebhookDelivery) -> None:
        # After the commit, best effort: webhook_deliveries (the table) is the record of
        # attempts; this message only lets others watch them. A lost produce is acceptable,
        # and producing before the commit could announce an attempt that was rolled back.
        if self._producer is None or self._codec is None or self._topics is None:
            return
        envelope = Envelope(
            payload=delivery,
            message_id=f"{delivery.delivery_id}:attempt:{delivery.attempt}",
            task_id=delivery.task_id,
            correlation_id=delivery.task_id,
            causation_id=delivery.delivery_id,
            occurred_at_ms=delivery.delivered_at_ms,
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
        listener: psycopg.Connection | None = None
        try:
            while not self._stop.is_set():
                if listener is None:
                    listener = self._listen()
                try:
                    while not self._stop.is_set() and self.deliver_one():
                        pass
                    wait_s = self._wait_s()
                except Exception:
                    # Keep the thread alive through a database outage: the queue is durable,
                    # and delivery resumes once Postgres answers again.
                    log.exception("sender loop failed; retrying")
                    wait_s = self._max_wait_s
                listener = self._wait(listener, wait_s)
        finally:
            if listener is not None:
                listener.close()

    def _wait_s(self) -> float:
        with self._pool.connection() as conn:
            due_ms = store.next_due_ms(conn)
        if due_ms is None:
            return self._max_wait_s
        return min(max(due_ms - self._now_ms(), 0) / 1000, self._max_wait_s)

    def _listen(self) -> psycopg.Connection | None:
        try:
            conn = psycopg.connect(self._database_url, autocommit=True,
                                   application_name="tasksaga-notifier-listen")
            conn.execute(f"LISTEN {store.WEBHOOKS_CHANNEL}")
            return conn
        except psycopg.Error as error:
            log.warning("cannot LISTEN (%s); waking every %.1f s instead", error,
                        self._max_wait_s)
            return None

    def _wait(self, listener: psycopg.Connection | None, wait_s: float) -> (
            psycopg.Connection | None):
        """Sleep up to ``wait_s``, or until a delivery is queued or the sender is stopped."""
        if wait_s <= 0:
            return listener
        if listener is None:
            self._stop.wait(wait_s)
            return None
        try:
            for _ in listener.notifies(timeout=wait_s, stop_after=1):
                pass
            return listener
        except psycopg.Error as error:
            log.warning("LISTEN connection lost (%s); reconnecting", error)
            listener.close()
            self._stop.wait(min(wait_s, self._max_wait_s))
            return None

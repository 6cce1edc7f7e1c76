"""tasksaga-notifier: task events in, signed webhook POSTs out.

One consumer (group ``<prefix>-notifier``) records subscriptions and queues deliveries in
Postgres; one sender leases them and POSTs up to ``webhook_senders`` at once (bounded per
receiver host and per tenant too). Replicas may run side by side: Kafka splits the events
between their consumers and the leases split the queue between their senders.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tasksaga.adapters import telemetry
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.clock import now_ms, random_fraction
from tasksaga.adapters.kafka_bus import (
    ConsumerLoop,
    ConsumerSettings,
    KafkaProducer,
    text_headers,
)
from tasksaga.adapters.lifecycle import ServiceStop, start_thread, stop_on_signals
from tasksaga.adapters.migrations import apply_migrations
from tasksaga.adapters.ops_server import (
    kafka_check,
    postgres_check,
    start_ops_server,
    threads_check,
)
from tasksaga.adapters.payload_crypto import payload_cipher_for
from tasksaga.adapters.pg_store import open_pool
from tasksaga.adapters.topics import ensure_service_topics
from tasksaga.adapters.url_guard import UrlGuard
from tasksaga.adapters.wire import Topics
from tasksaga.config import configure_logging
from tasksaga.notifier import rules
from tasksaga.notifier.consumer import NotificationConsumer
from tasksaga.notifier.pinned_http import PinnedPoster
from tasksaga.notifier.sender import Limits, Sender
from tasksaga.notifier.settings import NotifierSettings, load_settings

log = logging.getLogger(__name__)

SERVICE = "tasksaga-notifier"
THREAD_JOIN_TIMEOUT_S = 30.0
# A lease outlives the POST's deadline by this much: time to vet (DNS) and to record.
LEASE_MARGIN_S = 30.0


def run(
    settings: NotifierSettings,
    stop: ServiceStop,
    clock: Callable[[], int] = now_ms,
    jitter: Callable[[], float] = random_fraction,
) -> None:
    """Run the notifier until ``stop`` is set; returns once everything is shut down."""
    apply_migrations(settings.database_url)
    topics = Topics(settings.topic_prefix)
    ensure_service_topics(
        settings, [topics.task_events, topics.webhook_deliveries, topics.dead_letter])
    codec = AvroCodec(settings.contracts_dir, payload_cipher_for(settings))
    # Connections are held only for short claims and records, never during a POST.
    pool = open_pool(settings.database_url, max_size=6, name=SERVICE)
    producer = KafkaProducer(settings.kafka_bootstrap, SERVICE)
    poster = PinnedPoster(settings.webhook_timeout_s, max_connections=settings.webhook_senders)
    threads: list[threading.Thread] = []
    ops = None
    try:
        sender = Sender(
            pool=pool,
            database_url=settings.database_url,
            poster=poster,
            guard=UrlGuard(settings.url_allowlist),
            secret=settings.webhook_secret.get_secret_value(),
            schedule=settings.retry_policy(),
            now_ms=clock,
            random=jitter,
            stop=stop,
            producer=producer,
            codec=codec,
            topics=topics,
            limits=Limits(total=settings.webhook_senders,
                          per_receiver=settings.webhook_per_receiver,
                          per_tenant=settings.webhook_per_tenant),
            lease_ms=round((settings.webhook_timeout_s + LEASE_MARGIN_S) * 1000),
        )
        threads.append(start_thread("webhook-sender", _run_closing(sender.run, poster.close),
                                    stop))
        ops = start_ops_server(settings.metrics_port, {
            "postgres": postgres_check(pool),
            "kafka": kafka_check(settings.kafka_bootstrap),
            "sender": threads_check(lambda: threads),
            "running": lambda: not stop.is_set(),
        }, settings.metrics_host)
        consumer = NotificationConsumer(pool, clock, codec.cipher)
        ConsumerLoop(
            ConsumerSettings(
                bootstrap=settings.kafka_bootstrap,
                group_id=f"{settings.topic_prefix}-notifier",
                topics=[topics.task_events],
                dead_letter_topic=topics.dead_letter,
                client_id=SERVICE,
                extra=notifier_fetch_config(settings.notifier_fetch_wait_ms),
            ),
            codec,
            consumer.handle,
            producer,
            stop,
            clock,
            skip=lambda message: rules.nothing_to_do(text_headers(message)),
        ).run()
    finally:
        # Also reached when the consumer fails: the senders must not outlive it unnoticed.
        stop.set()
        if ops is not None:
            ops.shutdown()
        for thread in threads:
            thread.join(THREAD_JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning("%s did not stop within %.0f s", thread.name, THREAD_JOIN_TIMEOUT_S)
        try:
            producer.flush(10.0)
        except Exception as error:  # delivery records are best effort (see sender._publish)
            log.warning("unflushed delivery records at shutdown: %s", error)
        pool.close()


def _run_closing(target: Callable[[], None], close: Callable[[], None]) -> Callable[[], None]:
    def run_then_close() -> None:
        try:
            target()
        finally:
            close()

    return run_then_close


def notifier_fetch_config(wait_ms: int) -> dict[str, int]:
    """Fetches answered after ``wait_ms`` unless a MiB of records came first (0: at once)."""
    if wait_ms <= 0:
        return {}
    return {"fetch.wait.max.ms": wait_ms, "fetch.min.bytes": 1024 * 1024}


def main() -> int:
    settings = load_settings()
    configure_logging(settings.log_level, "notifier")
    # httpcore traces every request with its URL at DEBUG; callback URLs may carry tokens.
    logging.getLogger("httpcore").setLevel(logging.INFO)
    telemetry.configure(SERVICE, settings.otel_console)
    stop = stop_on_signals()
    run(settings, stop)
    log.info("stopped")
    return stop.exit_code

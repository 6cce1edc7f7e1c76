"""Step-worker service: consumers of step commands for its queues, plus the broadcast
cancellation listener."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import uuid

from psycopg_pool import ConnectionPool

from tasksaga.adapters import telemetry
from tasksaga.adapters.artifact_refs import PgArtifactRefs
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.clock import now_ms
from tasksaga.adapters.kafka_bus import (
    ConsumerLoop,
    ConsumerSettings,
    KafkaProducer,
    Unprocessable,
)
from tasksaga.adapters.kafka_parallel import ParallelConsumerLoop
from tasksaga.adapters.lifecycle import start_thread, stop_on_signals
from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga.adapters.ops_server import kafka_check, start_ops_server, threads_check
from tasksaga.adapters.payload_crypto import payload_cipher_for
from tasksaga.adapters.topics import all_topic_names, ensure_service_topics
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.config import ObjectStoreSettings, configure_logging
from tasksaga.core import messages as msg
from tasksaga.core.capabilities import MissingCapabilities, Route, describe, plan_subscriptions
from tasksaga.core.registry import load_registry
from tasksaga.worker.artifact_cache import PartCache
from tasksaga.worker.artifacts import ArtifactStore
from tasksaga.worker.cancellation import CancellationBook
from tasksaga.worker.capabilities import worker_capabilities
from tasksaga.worker.finished_steps import ProjectedSteps
from tasksaga.worker.runner import StepRunner
from tasksaga.worker.settings import WorkerSettings

log = logging.getLogger("tasksaga.worker")


def main() -> int:
    settings = WorkerSettings()
    s3 = ObjectStoreSettings()
    configure_logging(settings.log_level, "worker")
    telemetry.configure("tasksaga-worker", settings.otel_console)
    registry = load_registry(settings.task_modules)
    try:
        offered = worker_capabilities(settings.worker_capabilities,
                                      settings.worker_detect_capabilities)
        plan = plan_subscriptions(registry.routes(), settings.worker_queues or None, offered)
    except (MissingCapabilities, ValueError) as error:
        log.error("worker refuses to start: %s", error)
        return 2
    routes = plan.served
    for left in plan.left:
        log.info("queue %s: steps requiring %s are left to workers that have %s", left.queue,
                 describe(left.requires), describe(left.missing(offered)))
    topics = Topics(settings.topic_prefix)
    ensure_service_topics(settings, all_topic_names(topics, [], routes))

    stop = stop_on_signals()
    codec = AvroCodec(settings.contracts_dir, payload_cipher_for(settings))
    objects = MinioObjectStore(s3.endpoint, s3.access_key, s3.secret_key, s3.secure, s3.region)
    cancellations = CancellationBook()
    instance = f"worker-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def cancellation_listener() -> None:
        def on_cancel(envelope: Envelope) -> None:
            cancel = envelope.payload
            if not isinstance(cancel, msg.CancelStep):
                raise Unprocessable(f"{type(cancel).__name__} is not a CancelStep: it does not "
                                    "belong on the step-cancellations topic")
            if cancellations.cancel((cancel.task_id, cancel.step, cancel.attempt)):
                log.info("cancelled running step %s/%s", cancel.task_id, cancel.step)

        ConsumerLoop(
            ConsumerSettings(
                bootstrap=settings.kafka_bootstrap,
                group_id=f"{settings.topic_prefix}-{instance}-cancellations",
                topics=[topics.step_cancellations],
                dead_letter_topic=topics.dead_letter,
                client_id=f"{instance}-cancellations",
                auto_offset_reset="latest",
            ),
            codec, on_cancel, KafkaProducer(settings.kafka_bootstrap, f"{instance}-dlq"),
            stop, now_ms,
        ).run()

    # Commands whose answer the projections already show are not run again (a restart, a
    # group reset, a republished topic). Short timeouts: with the database down, a command
    # runs after at most a couple of seconds instead of waiting for it.
    finished_pool = ConnectionPool(
        settings.database_url, min_size=0, max_size=4, timeout=2.0, open=True,
        name="worker-finished", kwargs={"application_name": "worker-finished",
                                        "connect_timeout": 2})
    finished = (ProjectedSteps(finished_pool, codec.cipher) if settings.worker_skip_finished
                else None)
    # Artifacts (ctx.artifacts): content in object storage, who holds it in Postgres.
    refs_pool = ConnectionPool(settings.database_url, min_size=0, max_size=4, open=True,
                               name="worker-artifact-refs",
                               kwargs={"application_name": "worker-artifact-refs"})
    cache = PartCache(settings.worker_artifact_cache_bytes)
    artifacts = ArtifactStore(objects, PgArtifactRefs(refs_pool),
                              cache=cache if cache.max_bytes else None)

    def consumer(route: Route) -> None:
        queue = route.name  # the queue, with its capabilities if the route has some
        producer = KafkaProducer(settings.kafka_bootstrap, f"{instance}-{queue}",
                                 settings.worker_delivery_timeout_ms)
        runner = StepRunner(registry, objects, producer, codec, topics, cancellations, now_ms,
                            stop, settings.worker_max_result_bytes, finished, artifacts,
                            settings.worker_start_report_delay_ms,
                            settings.worker_ask_finished_after_ms)
        ParallelConsumerLoop(
            ConsumerSettings(
                bootstrap=settings.kafka_bootstrap,
                # One consumer group per queue (and capability set): they scale and
                # rebalance independently, and an empty group shows no capable worker runs.
                group_id=f"{settings.topic_prefix}-{settings.worker_group}-{queue}",
                topics=[topics.step_commands(route.queue, route.requires)],
                dead_letter_topic=topics.dead_letter,
                client_id=f"{instance}-{queue}",
                # Static membership: a restarted worker gets its partitions back at once
                # instead of after the dead member's session timeout.
                group_instance_id=(f"{settings.worker_instance_id}-{queue}"
                                   if settings.worker_instance_id else None),
                max_poll_interval_ms=settings.worker_max_poll_interval_ms,
            ),
            codec, runner.handle, producer, stop, now_ms,
            concurrency=settings.worker_concurrency,
            shutdown_seconds=settings.worker_shutdown_seconds,
            revoke_drain_seconds=settings.worker_revoke_drain_seconds,
        ).run()

    threads: list[threading.Thread] = [
        start_thread("cancellations", cancellation_listener, stop)
    ]
    for route in routes:
        threads.append(start_thread(f"consumer-{route.name}", functools.partial(consumer, route),
                                    stop))
    # Ready while Kafka answers and every queue's consumer (and the cancellation listener)
    # runs. Postgres is not a dependency: without it a worker runs commands, unchecked.
    start_ops_server(settings.metrics_port, {
        "kafka": kafka_check(settings.kafka_bootstrap),
        "consumers": threads_check(lambda: threads),
        "running": lambda: not stop.is_set(),
    }, settings.metrics_host)
    log.info("worker running: queues %s, capabilities %s, concurrency %d",
             ", ".join(r.name for r in routes), describe(offered), settings.worker_concurrency)
    stop.wait()
    deadline = time.monotonic() + settings.worker_shutdown_seconds + 5
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0.0))
    log.info("worker stopped")
    return stop.exit_code


if __name__ == "__main__":
    raise SystemExit(main())

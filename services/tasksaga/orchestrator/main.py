"""Orchestrator service: the composition root wiring Kafka, Postgres and the saga core."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from datetime import timedelta

import psycopg
from opentelemetry import metrics
from psycopg_pool import ConnectionPool

from tasksaga.adapters import telemetry
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.capable_workers import (
    CapabilityWatch,
    ConsumerGroupMembers,
    worker_group_of,
)
from tasksaga.adapters.clock import now_ms, random_fraction
from tasksaga.adapters.dead_letters import (
    INDEX_GROUP_SUFFIX,
    DeadLetterIndex,
    run_dead_letter_indexer,
)
from tasksaga.adapters.kafka_bus import ConsumerLoop, ConsumerSettings, KafkaProducer
from tasksaga.adapters.lag_watch import LagWatch
from tasksaga.adapters.lifecycle import ServiceStop, start_thread, stop_on_signals
from tasksaga.adapters.ops_server import (
    kafka_check,
    postgres_check,
    start_ops_server,
    threads_check,
)
from tasksaga.adapters.outbox_publisher import OutboxPublisher
from tasksaga.adapters.outbox_relay import OutboxRelay, run_on_notify
from tasksaga.adapters.partitions import PartitionPeriod, ensure_partitions
from tasksaga.adapters.payload_crypto import payload_cipher_for
from tasksaga.adapters.pg_shards import ShardedEventStore, migrate_shards, open_shard_pools
from tasksaga.adapters.pg_store import OUTBOX_CHANNEL, prune_older_than
from tasksaga.adapters.projections import projection_lag
from tasksaga.adapters.service_metrics import StepMetrics, StoreSampler
from tasksaga.adapters.topics import all_topic_names, ensure_service_topics
from tasksaga.adapters.wire import Topics
from tasksaga.config import configure_logging
from tasksaga.core.capabilities import Route
from tasksaga.core.registry import load_registry
from tasksaga.orchestrator.processor import Orchestrator, database_clock
from tasksaga.orchestrator.settings import OrchestratorSettings
from tasksaga.projector.thread import start_projector
from tasksaga.workflow.runtime import WorkflowRuntime

log = logging.getLogger("tasksaga.orchestrator")
PROJECTION_LAG_WARN_S = 30.0  # the maintenance log line turns into a warning past this


def run_timers(orchestrator: Orchestrator, stop: threading.Event) -> None:
    """Fire due timers; sleep until the next one is due (at most 250 ms, for new timers)."""
    failures = 0
    while not stop.is_set():
        try:
            orchestrator.fire_due_timers()
            delay = orchestrator.next_timer_delay_ms()
            failures = 0
        except Exception:
            # A lost connection (a failover, a terminated backend) must not end the service:
            # the timers are durable rows, so the next round fires whatever is due.
            failures += 1
            log.exception("firing timers failed (%d in a row); trying again", failures)
            stop.wait(min(0.2 * 2 ** failures, 5.0))
            continue
        wait_ms = 250 if delay is None else min(max(delay, 5), 250)
        stop.wait(wait_ms / 1000)


def run_maintenance(
    pool: ConnectionPool, settings: OrchestratorSettings, stop: threading.Event,
) -> None:
    """Create the event log's upcoming partitions, prune the inbox and the delivery log, and
    log how far the projections are behind."""
    while not stop.wait(settings.maintenance_interval_s):
        try:
            create_upcoming_partitions(pool, settings)
            pruned = {
                "processed_messages": prune_older_than(
                    pool, "processed_messages", settings.inbox_retention_hours * 3600),
                "webhook_deliveries": prune_older_than(
                    pool, "webhook_deliveries", settings.delivery_log_retention_hours * 3600),
            }
            if any(pruned.values()):
                log.info("pruned %s", ", ".join(f"{n} {t} rows" for t, n in pruned.items()))
            lag = projection_lag(pool)
            (log.warning if lag.seconds > PROJECTION_LAG_WARN_S else log.info)(
                "projection lag: %s", lag)
        except Exception:
            log.exception("maintenance failed; trying again in %.0f s",
                          settings.maintenance_interval_s)


def create_upcoming_partitions(pool: ConnectionPool, settings: OrchestratorSettings) -> None:
    """Never fatal: without its partition, an append lands in the default partition."""
    try:
        with pool.connection() as conn:
            done = ensure_partitions(conn, PartitionPeriod.parse(settings.event_partition),
                                     timedelta(seconds=settings.event_partition_ahead_s))
    except psycopg.Error:
        log.exception("creating the event log's upcoming partitions failed; appends go to "
                      "the default partition until the next maintenance")
        return
    if done.created:
        log.info("created event partitions %s", ", ".join(done.created))
    for lower, upper in done.skipped:
        log.warning("no partition for [%s, %s): the default partition already holds streams "
                    "opened then (they stay there and are never archived)", lower, upper)


def deployment_groups(settings: OrchestratorSettings, topics: Topics,
                      queues: set[str], routes: Iterable[Route] = ()) -> dict[str, list[str]]:
    """Every consumer group of this deployment and the topics it consumes."""
    prefix = settings.topic_prefix
    groups = {f"{prefix}-{settings.orchestrator_group}": [topics.task_commands,
                                                          topics.step_results],
              f"{prefix}-notifier": [topics.task_events],
              f"{prefix}-{INDEX_GROUP_SUFFIX}": [topics.dead_letter]}
    for queue in sorted(queues):
        groups[f"{prefix}-{settings.worker_group}-{queue}"] = [topics.step_commands(queue)]
    for route in sorted(routes):
        groups[f"{prefix}-{settings.worker_group}-{route.name}"] = [
            topics.step_commands(route.queue, route.requires)]
    return groups


def run_lag_watch(watch: LagWatch, settings: OrchestratorSettings,
                  stop: threading.Event) -> None:
    while not stop.wait(settings.lag_watch_interval_s):
        try:
            watch.check(now_ms())
        except Exception:
            log.exception("consumer lag watch failed; trying again in %.0f s",
                          settings.lag_watch_interval_s)
    watch.close()


def run_capability_watch(watch: CapabilityWatch, interval_s: float,
                         stop: threading.Event) -> None:
    while True:
        try:
            watch.check()
        except Exception:
            log.exception("checking the capability routes' workers failed; trying again in"
                          " %.0f s", interval_s)
        if stop.wait(interval_s):
            return


def run_sampler(sampler: StoreSampler, interval_s: float, stop: threading.Event) -> None:
    """Refresh the gauges read from Postgres (tasks by state, outbox, projection lag)."""
    while True:
        try:
            sampler.sample()
        except Exception:
            log.exception("sampling the metrics failed; trying again in %.0f s", interval_s)
        if stop.wait(interval_s):
            return


def per_shard_threads(settings: OrchestratorSettings, shard: str, url: str,
                      pool: ConnectionPool, codec: AvroCodec, client_id: str, named: bool,
                      stop: ServiceStop) -> list[threading.Thread]:
    """The outbox relay, maintenance and (if run here) projector of one shard; ``named``:
    thread names carry the shard's (one shard: the names they always had)."""
    suffix = f"-{shard}" if named else ""
    relay = OutboxRelay(pool, KafkaProducer(settings.kafka_bootstrap,
                                            f"{client_id}-relay{suffix}"),
                        settings.topic_prefix, codec,
                        sweep_age_s=settings.outbox_sweep_age_s
                        if settings.outbox_direct_publish else 0.0)
    threads = [
        start_thread(f"outbox-relay{suffix}", lambda: run_on_notify(
            url, OUTBOX_CHANNEL, relay.publish_pending, stop, name=f"outbox-relay{suffix}"),
            stop),
        start_thread(f"maintenance{suffix}", lambda: run_maintenance(pool, settings, stop),
                     stop),
    ]
    if settings.orchestrator_run_projector:
        threads.append(start_projector(f"projector{suffix}", url, pool, codec, settings, stop))
    return threads


def main() -> int:
    settings = OrchestratorSettings()
    configure_logging(settings.log_level, "orchestrator")
    telemetry.configure("tasksaga-orchestrator", settings.otel_console)
    registry = load_registry(settings.task_modules)
    topics = Topics(settings.topic_prefix)
    shards = settings.shard_config()
    migrate_shards(shards)  # every shard holds the whole schema
    ensure_service_topics(settings, all_topic_names(topics, registry.queues(), registry.routes()))

    stop = stop_on_signals()
    codec = AvroCodec(settings.contracts_dir, payload_cipher_for(settings))
    pools = open_shard_pools(shards, settings.orchestrator_pool_size, "orchestrator")
    # The first shard's pool: the rows of no task (dead letters, the metrics' samples).
    pool = pools[shards.map.home]
    client_id = f"orchestrator-{settings.orchestrator_instance_id or os.getpid()}"
    store = ShardedEventStore(shards.map, pools, codec,
                              notify_outbox=not settings.outbox_direct_publish)
    publisher = (OutboxPublisher(KafkaProducer(settings.kafka_bootstrap, f"{client_id}-outbox"),
                                 pools) if settings.outbox_direct_publish else None)
    for shard_pool in pools.values():
        create_upcoming_partitions(shard_pool, settings)  # before the first append
    meter = metrics.get_meter("tasksaga.orchestrator")
    orchestrator = Orchestrator(registry, store, codec, topics, database_clock, random_fraction,
                                state_cache_bytes=settings.orchestrator_state_cache_bytes,
                                step_metrics=StepMetrics(meter),
                                workflows=WorkflowRuntime(
                                    settings.orchestrator_workflow_cache_entries),
                                publisher=publisher, chains=settings.orchestrator_chain_steps)
    dead_letters = KafkaProducer(settings.kafka_bootstrap, f"{client_id}-dlq")

    # Per shard: its outbox relay (a task's records are all on its shard: their order holds),
    # its maintenance and its projector. One timer loop visits every shard.
    threads = [start_thread("timers", lambda: run_timers(orchestrator, stop), stop)]
    if publisher is not None:
        threads.append(start_thread("outbox-settler", lambda: publisher.run_settler(stop),
                                    stop))
    for shard in shards.map.shards:
        threads += per_shard_threads(settings, shard, shards.urls[shard], pools[shard],
                                     codec, client_id, len(pools) > 1, stop)
    watch = LagWatch(settings.kafka_bootstrap,
                     deployment_groups(settings, topics, registry.queues(), registry.routes()),
                     settings.lag_alert_ratio, meter)
    threads.append(start_thread("lag-watch", lambda: run_lag_watch(watch, settings, stop),
                                stop))
    capabilities = CapabilityWatch(registry.routes(), ConsumerGroupMembers(
        settings.kafka_bootstrap, worker_group_of(settings.topic_prefix, settings.worker_group),
        ttl_s=0.0), meter)
    threads.append(start_thread("capability-watch", lambda: run_capability_watch(
        capabilities, settings.capability_watch_interval_s, stop), stop))
    # Dead letters for operators (docs/operations.md, "Operator repair").
    threads.append(start_thread("dead-letter-index", lambda: run_dead_letter_indexer(
        settings.kafka_bootstrap, topics.dead_letter,
        f"{settings.topic_prefix}-{INDEX_GROUP_SUFFIX}", codec, DeadLetterIndex(pool), stop),
        stop))
    sampler = StoreSampler(pool, meter)
    threads.append(start_thread("metrics-sampler", lambda: run_sampler(
        sampler, settings.metrics_sample_interval_s, stop), stop))
    start_ops_server(settings.metrics_port, {
        **{"postgres" if len(pools) == 1 else f"postgres-{shard}": postgres_check(shard_pool)
           for shard, shard_pool in pools.items()},
        "kafka": kafka_check(settings.kafka_bootstrap),
        "threads": threads_check(lambda: threads),
        "running": lambda: not stop.is_set(),
    }, settings.metrics_host)

    loop = ConsumerLoop(
        ConsumerSettings(
            bootstrap=settings.kafka_bootstrap,
            group_id=f"{settings.topic_prefix}-{settings.orchestrator_group}",
            topics=[topics.task_commands, topics.step_results],
            dead_letter_topic=topics.dead_letter,
            client_id=client_id,
            group_instance_id=settings.orchestrator_instance_id,
            # Commands and results of a task share a partition number (both keyed by task
            # id, same partition count): range assignment gives both to one owner.
            assignment_strategy="range",
        ),
        codec, orchestrator.handle, dead_letters, stop, now_ms,
        batch_handler=orchestrator.handle_batch,
    )
    log.info("orchestrator running: tasks %s", ", ".join(registry.names()))
    try:
        loop.run()
    finally:
        stop.set()
        if publisher is not None:  # the loop is done: no batch publishes or deletes any more
            publisher.close()
        for thread in threads:
            thread.join(timeout=10)
        for shard_pool in pools.values():
            shard_pool.close()
        log.info("orchestrator stopped")
    return stop.exit_code


if __name__ == "__main__":
    raise SystemExit(main())

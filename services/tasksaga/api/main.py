"""API service: the composition root, served by uvicorn."""

from __future__ import annotations

from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI
from opentelemetry.metrics import MeterProvider
from psycopg_pool import ConnectionPool

from tasksaga.adapters import telemetry
from tasksaga.adapters.archive import Archiver
from tasksaga.adapters.artifact_refs import PgArtifactRefs
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.capable_workers import ConsumerGroupMembers, worker_group_of
from tasksaga.adapters.dead_letters import DeadLetterIndex
from tasksaga.adapters.kafka_producer import KafkaProducer
from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga.adapters.ops_server import start_ops_server
from tasksaga.adapters.orphan_sweep import OrphanSweeper
from tasksaga.adapters.payload_crypto import payload_cipher_for
from tasksaga.adapters.pg_shards import migrate_shards, open_shard_pools
from tasksaga.adapters.topics import all_topic_names, ensure_service_topics
from tasksaga.adapters.url_guard import UrlGuard
from tasksaga.adapters.wire import Topics
from tasksaga.api.access_store import ApiKeyStore, RateLimiter
from tasksaga.api.app import create_app
from tasksaga.api.body_limits import Limits
from tasksaga.api.dependencies import ApiDependencies, SubmitGate
from tasksaga.api.identity import TokenVerifier
from tasksaga.api.live.feed import LiveFeed, PostgresEventLog
from tasksaga.api.live.hub import LiveHub
from tasksaga.api.live.routes import LiveService
from tasksaga.api.live.tickets import TicketSigner
from tasksaga.api.queries import ProjectionQueries
from tasksaga.api.readiness import readiness_checks
from tasksaga.api.repair_access import RepairServices
from tasksaga.api.security import Security
from tasksaga.api.settings import ApiSettings
from tasksaga.api.shard_queries import ShardedQueries, TaskQueries
from tasksaga.config import ObjectStoreSettings, configure_logging
from tasksaga.core.authorization import RoleAuthorization
from tasksaga.core.registry import load_registry
from tasksaga.worker.artifacts import ArtifactStore

_DEV_TASK_ID_SECRET = b"tasksaga-insecure-development-task-id-secret"


def build_dependencies(settings: ApiSettings, s3: ObjectStoreSettings) -> ApiDependencies:
    registry = load_registry(settings.task_modules)
    topics = Topics(settings.topic_prefix)
    shards = settings.shard_config()
    migrate_shards(shards)
    ensure_service_topics(settings, all_topic_names(topics, registry.queues(), registry.routes()))
    objects = MinioObjectStore(s3.endpoint, s3.access_key, s3.secret_key, s3.secure, s3.region)
    buckets = []
    for definition in registry:
        for step in definition.upload_steps():
            assert step.upload is not None
            objects.ensure_bucket(step.upload.bucket)
            buckets.append(step.upload.bucket)
    # The first shard holds the API's own rows (keys, rate limits, dead letters); a task's
    # reads go to its shard's projections (docs/scaling.md).
    pools = open_shard_pools(shards, settings.api_pool_size, "api")
    pool = pools[shards.map.home]
    codec = AvroCodec(settings.contracts_dir, payload_cipher_for(settings))
    queries: TaskQueries = (
        ProjectionQueries(pool, codec.cipher) if len(pools) == 1 else ShardedQueries(
            shards.map, {name: ProjectionQueries(p, codec.cipher) for name, p in pools.items()}))
    security = Security(
        verifier=TokenVerifier(settings),
        api_keys=ApiKeyStore(pool).lookup if settings.auth_api_keys else None,
        rate_limiter=RateLimiter(pool, settings.api_rate_limit_requests,
                                 settings.api_rate_limit_window_s),
        authorization=RoleAuthorization(),
        insecure_dev=settings.insecure_dev,
    )
    secret = (settings.task_id_secret.get_secret_value().encode() if settings.task_id_secret
              else _DEV_TASK_ID_SECRET)
    hub = LiveHub(settings.api_live_queue_size, settings.api_live_max_watchers)
    live = LiveService(
        hub=hub,
        feed=LiveFeed(settings.kafka_bootstrap, topics.task_events, topics.step_results,
                      codec, hub, idle_s=settings.api_live_idle_s),
        log=PostgresEventLog(pool, codec, lambda task_id: pools[shards.map.shard_of(task_id)]),
        tickets=TicketSigner(secret, settings.api_stream_ticket_ttl_s),
        keepalive_s=settings.api_live_keepalive_s,
    )
    checks = readiness_checks(queries, settings.kafka_bootstrap, objects,
                              buckets[0] if buckets else None)

    def readiness() -> dict[str, str]:
        # Streams are refused until the feed reads from its partitions' ends (the seam).
        return {**checks(), "live_feed": "ok" if live.feed.ready else "starting"}

    return ApiDependencies(
        registry=registry,
        queries=queries,
        # A delivery timeout equal to the submit timeout: a failed send is final, never
        # delivered later behind the 503 (api/dependencies.py).
        producer=KafkaProducer(settings.kafka_bootstrap, "api",
                               delivery_timeout_ms=int(settings.api_submit_timeout_s * 1000)),
        codec=codec,
        topics=topics,
        objects=objects,
        security=security,
        url_guard=UrlGuard(settings.url_allowlist),
        limits=Limits(json_bytes=settings.api_max_json_bytes,
                      request_bytes=settings.api_max_request_bytes,
                      file_bytes=settings.api_max_file_bytes,
                      idle_timeout_s=settings.api_body_idle_timeout_s,
                      total_timeout_s=settings.api_body_total_timeout_s),
        task_id_secret=secret,
        max_files=settings.api_max_files_per_request,
        max_page_size=settings.api_max_page_size,
        submit_gate=SubmitGate(open_s=settings.api_submit_timeout_s),
        readiness=readiness,
        live=live,
        # The sweep looks tasks up on every shard: another shard's task is not an orphan.
        repair=RepairServices(DeadLetterIndex(pool),
                              OrphanSweeper(pool, objects, list(pools.values())),
                              settings.api_orphan_grace_s),
        archiver=Archiver(pool, objects, settings.archive_bucket),
        capable_workers=ConsumerGroupMembers(
            settings.kafka_bootstrap, worker_group_of(settings.topic_prefix,
                                                      settings.worker_group)),
        # Upload steps with produces= publish their files here, held in the same
        # artifact_refs table the workers use (worker/main.py).
        artifacts=ArtifactStore(objects, PgArtifactRefs(ConnectionPool(
            settings.database_url, min_size=0, max_size=4, open=True,
            name="api-artifact-refs", kwargs={"application_name": "api-artifact-refs"}))),
    )


class _Server(uvicorn.Server):
    """Ends the live streams when asked to stop: a graceful shutdown waits for every open
    response, and a stream would keep it waiting until its task ended."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)


def _end_streams(deps: ApiDependencies) -> Callable[[], None]:
    def end() -> None:
        if deps.live is not None:
            deps.live.feed.call_soon(deps.live.hub.shutdown,
                                     "this API process is stopping; resume with Last-Event-ID")

    return end


def instrument(app: FastAPI, meter_provider: MeterProvider | None = None) -> None:
    """A server span per request (the root of a submitted task's trace) and the HTTP
    metrics, by route template (never by path: task ids stay out of the labels)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="/health/live,/health/ready",
                                       exclude_spans=["receive", "send"],
                                       meter_provider=meter_provider)


def main() -> None:
    settings = ApiSettings()
    s3 = ObjectStoreSettings()
    configure_logging(settings.log_level, "api")
    telemetry.configure("tasksaga-api", settings.otel_console)
    deps = build_dependencies(settings, s3)
    app = create_app(deps)
    instrument(app)
    readiness = deps.readiness
    # /metrics on the ops port, never on the public one; /health/* stay on both.
    start_ops_server(settings.metrics_port, {} if readiness is None else {
        "dependencies": lambda: all(r == "ok" for r in readiness().values())},
        settings.metrics_host)
    try:
        config = uvicorn.Config(app, host=settings.api_host,
                                port=settings.api_port, log_level=settings.log_level.lower(),
                                timeout_keep_alive=5)
        _Server(config, _end_streams(deps)).run()
    finally:
        deps.queries.close()


if __name__ == "__main__":
    main()

"""The API app built in-process on the real Postgres, Kafka and MinIO (no other service), for
tests of what the API alone guarantees."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.dependencies import models as fastapi_dependencies
from fastapi.testclient import TestClient

from tasksaga.adapters.artifact_refs import PgArtifactRefs
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_producer import KafkaProducer
from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga.adapters.payload_crypto import PayloadCipher
from tasksaga.adapters.pg_store import open_pool
from tasksaga.adapters.url_guard import UrlGuard
from tasksaga.adapters.wire import Topics
from tasksaga.api.app import create_app
from tasksaga.api.body_limits import Limits
from tasksaga.api.dependencies import ApiDependencies, SubmitGate
from tasksaga.api.identity import TokenVerifier, mint_token
from tasksaga.api.queries import ProjectionQueries
from tasksaga.api.readiness import readiness_checks
from tasksaga.api.security import Security
from tasksaga.api.settings import ApiSettings
from tasksaga.core.authorization import RoleAuthorization
from tasksaga.core.registry import load_registry
from tasksaga.worker.artifacts import ArtifactStore

TOKEN_SECRET = "o" * 48


def bearer(tenant: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(TOKEN_SECRET, 'u', tenant, list(roles))}"}


def object_store(stack_env: dict[str, str]) -> MinioObjectStore:
    store = MinioObjectStore(stack_env["TASKSAGA_S3_ENDPOINT"], stack_env["TASKSAGA_S3_ACCESS_KEY"],
                             stack_env["TASKSAGA_S3_SECRET_KEY"])
    store.ensure_bucket("zip-uploads")
    return store


@contextmanager
def inprocess_api(stack_env: dict[str, str], kafka_bootstrap: str, topic_prefix: str | None = None,
                  delivery_timeout_ms: int = 5000) -> Iterator[tuple[TestClient, ApiDependencies]]:
    settings = ApiSettings(kafka_bootstrap=kafka_bootstrap,
                           database_url=stack_env["TASKSAGA_DATABASE_URL"],
                           auth_hs256_secret=TOKEN_SECRET, task_id_secret="t" * 48)
    objects = object_store(stack_env)
    pool = open_pool(settings.database_url, 4, "api-inprocess-test")
    queries = ProjectionQueries(pool, PayloadCipher(None))
    deps = ApiDependencies(
        registry=load_registry(["tasksaga_examples.zip_archive"]), queries=queries,
        producer=KafkaProducer(kafka_bootstrap, "api-inprocess",
                               delivery_timeout_ms=delivery_timeout_ms),
        codec=AvroCodec(), topics=Topics(topic_prefix or f"inproc{uuid.uuid4().hex[:6]}"),
        objects=objects,
        security=Security(TokenVerifier(settings), None, None, RoleAuthorization()),
        url_guard=UrlGuard(), limits=Limits(1 << 20, 1 << 24, 1 << 23, 5, 60),
        task_id_secret=b"t" * 48, submit_gate=SubmitGate(open_s=5.0),
        readiness=readiness_checks(queries, kafka_bootstrap, objects, "zip-uploads", 1.0),
        artifacts=ArtifactStore(objects, PgArtifactRefs(pool)),  # UploadFiles produces=
    )
    try:
        with TestClient(create_app(deps)) as client:
            yield client, deps
    finally:
        pool.close()
        deps.producer.close(1.0)  # delivers what is queued; the client lives on until freed


def release_inprocess_apps() -> None:
    """Free the in-process apps nobody uses any more, and with them their Kafka clients (the
    producer and the readiness check's admin client), which otherwise keep reconnecting to a
    broker that is gone — logging each refusal — until the process exits.

    FastAPI remembers what kind of callable each dependency is in module-level LRU caches,
    whose keys hold the callables: the app's dependency closures, and through them its
    ``ApiDependencies``. Call this once the test dropped its own references.
    """
    for cache in (fastapi_dependencies._is_gen_callable_cached,
                  fastapi_dependencies._is_async_gen_callable_cached,
                  fastapi_dependencies._is_coroutine_callable_cached):
        cache.cache_clear()
    gc.collect()  # the app and its dependencies reference each other

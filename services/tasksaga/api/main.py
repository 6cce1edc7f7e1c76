"""API service: the composition root, served by uvicorn."""

from __future__ import annotations

import uvicorn

from tasksaga.adapters import telemetry
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import KafkaProducer
from tasksaga.adapters.migrations import apply_migrations
from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga.adapters.payload_crypto import payload_cipher_for
from tasksaga.adapters.pg_store import open_pool
from tasksaga.adapters.topics import all_topic_names, ensure_topics
from tasksaga.adapters.wire import Topics
from tasksaga.api.app import ApiDependencies, create_app
from tasksaga.api.queries import ProjectionQueries
from tasksaga.api.settings import ApiSettings
from tasksaga.config import ObjectStoreSettings, configure_logging
from tasksaga.core.registry import load_registry


def main() -> None:
    settings = ApiSettings()
    s3 = ObjectStoreSettings()
    configure_logging(settings.log_level, "api")
    telemetry.configure("tasksaga-api", settings.otel_console)
    registry = load_registry(settings.task_modules)
    topics = Topics(settings.topic_prefix)
    apply_migrations(settings.database_url)
    ensure_topics(settings.kafka_bootstrap, all_topic_names(topics, registry.queues()),
                  settings.topic_partitions)
    objects = MinioObjectStore(s3.endpoint, s3.access_key, s3.secret_key, s3.secure, s3.region)
    for definition in registry:
        for step in definition.upload_steps():
            assert step.upload is not None
            objects.ensure_bucket(step.upload.bucket)
    pool = open_pool(settings.database_url, settings.api_pool_size, "api")
    codec = AvroCodec(settings.contracts_dir, payload_cipher_for(settings))
    deps = ApiDependencies(
        registry=registry,
        queries=ProjectionQueries(pool, codec.cipher),
        producer=KafkaProducer(settings.kafka_bootstrap, "api"),
        codec=codec,
        topics=topics,
        objects=objects,
        max_files=settings.api_max_files_per_request,
    )
    try:
        uvicorn.run(create_app(deps), host=settings.api_host, port=settings.api_port,
                    log_level=settings.log_level.lower())
    finally:
        pool.close()


if __name__ == "__main__":
    main()

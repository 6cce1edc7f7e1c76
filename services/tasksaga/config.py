"""Typed settings shared by every service, read once from TASKSAGA_* environment variables.

Each service extends ``CommonSettings`` with its own fields; a missing or insecure value stops
the service at start-up with a message naming the variable.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tasksaga.adapters.avro_codec import DEFAULT_CONTRACTS_DIR
from tasksaga.core.shards import ShardConfig, parse_shards


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKSAGA_", extra="ignore")

    kafka_bootstrap: str = Field(description="Kafka bootstrap servers, host:port[,host:port]")
    database_url: str = Field(description="postgresql://user:password@host:port/db")
    topic_prefix: str = "tasksaga"
    topic_partitions: int = 6
    # Replication of every topic the services create: 1 on the one-broker local stack; 3 and
    # 2 on a real cluster (deploy/), so that acks=all survives the loss of a broker.
    topic_replication_factor: int = Field(default=1, ge=1)
    topic_min_insync_replicas: int = Field(default=1, ge=1)
    task_modules: Annotated[list[str], NoDecode] = Field(
        default=["tasksaga_examples.zip_archive", "tasksaga_examples.video_pipeline"],
        description="importable modules whose TaskDefinitions this service knows",
    )
    contracts_dir: Path = DEFAULT_CONTRACTS_DIR
    log_level: str = "INFO"
    otel_console: bool = False
    # /metrics, /health/live and /health/ready on their own port (adapters/ops_server.py);
    # unset: not served. Each process needs its own port (one per pod in deploy/k8s).
    metrics_port: int | None = Field(default=None, ge=0, le=65535,
                                     description="TASKSAGA_METRICS_PORT: ops endpoint port")
    metrics_host: str = "0.0.0.0"  # the pod's network: Prometheus and the kubelet reach it
    metrics_sample_interval_s: float = Field(default=15.0, gt=0)
    # The one loud switch for development: without it, a service refuses to start when a key
    # or secret it needs (token keys, payload keys) is missing. Never set it in production.
    insecure_dev: bool = Field(
        default=False,
        description="TASKSAGA_INSECURE_DEV=true: allow missing keys and secrets (development only)",
    )
    payload_keys: SecretStr | None = Field(
        default=None,
        description="TASKSAGA_PAYLOAD_KEYS=kid:base64(32 bytes)[,older...]: AES-GCM key ring "
                    "for requests, step data and responses, newest (current) first",
    )

    url_allowlist: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="TASKSAGA_URL_ALLOWLIST=CIDR|host[,...]: callback receivers let through the "
                    "SSRF guard although not public (local receivers in development and tests)",
    )

    # The event store over several Postgres clusters (core/shards.py, docs/scaling.md):
    # unset, the one database at TASKSAGA_DATABASE_URL holds every task.
    shards: str | None = Field(
        default=None,
        description="TASKSAGA_SHARDS='name=postgresql://...[;name=postgresql://...]': the "
                    "event store's shards, the first holding the rows of no task",
    )
    shard_buckets: str | None = Field(
        default=None,
        description="TASKSAGA_SHARD_BUCKETS='name:first-last[,first-last][;...]': the shard of "
                    "each of the 256 buckets (unset: equal contiguous ranges in shard order)",
    )

    # Where the archiver writes old event partitions (docs/operations.md, "Retention and
    # archival"); the API reads a task's archive from there to restore it.
    archive_bucket: str = Field(default="tasksaga-archive", min_length=3, max_length=63,
                                pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")

    def shard_config(self) -> ShardConfig:
        """The shards and their buckets (a bad value stops the service naming the variable)."""
        return parse_shards(self.shards, self.shard_buckets, self.database_url)

    @model_validator(mode="after")
    def _valid_shards(self) -> CommonSettings:
        self.shard_config()  # refused at start, not at the first transaction
        return self

    @field_validator("task_modules", "url_allowlist", mode="before")
    @classmethod
    def _split_modules(cls, value: object) -> object:
        return split_list(value)


class ObjectStoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKSAGA_S3_", extra="ignore")

    endpoint: str = Field(description="host:port of the S3 (MinIO) server")
    access_key: str
    secret_key: str
    secure: bool = False
    region: str = "us-east-1"


def split_list(value: object) -> object:
    """Environment lists: "a,b" or a JSON array."""
    if isinstance(value, str):
        if value.strip().startswith("["):
            return json.loads(value)
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def configure_logging(level: str, service: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )

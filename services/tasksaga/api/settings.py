from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from tasksaga.config import CommonSettings, split_list

log = logging.getLogger(__name__)

_MIB = 1024 * 1024


class ApiSettings(CommonSettings):
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_pool_size: int = 8
    # Form parts above this size spool to a temporary file, never to memory.
    api_max_files_per_request: int = 100
    # The workers' consumer group name (TASKSAGA_WORKER_GROUP of the workers): a status shows
    # the steps whose capability group has no member as waiting for such a worker.
    worker_group: str = "worker"

    # -- identity: bearer JWTs (HS256 locally; RS256/ES256 keys or a JWKS in production) ------
    auth_hs256_secret: SecretStr | None = Field(
        default=None, description="shared secret for HS256 tokens (at least 32 bytes)")
    auth_public_key_files: Annotated[list[Path], NoDecode] = Field(
        default=[], description="PEM public keys (RSA or EC) that verify RS256/ES256 tokens")
    auth_jwks_url: str | None = Field(default=None, description="a JWKS document's URL")
    auth_jwks_file: Path | None = Field(default=None, description="a JWKS document on disk")
    auth_issuer: str | None = Field(default=None, description="required `iss` of tokens")
    auth_audience: str = Field(default="tasksaga", description="required `aud` of tokens")
    auth_leeway_s: float = 30.0
    auth_claim_subject: str = "sub"
    auth_claim_tenant: str = "tenant"
    auth_claim_roles: str = "roles"
    # Service accounts: API keys looked up (hashed) in the api_keys table.
    auth_api_keys: bool = True
    # Task ids are an HMAC of (tenant, type, Idempotency-Key): nobody can compute another
    # tenant's ids. Required outside development.
    task_id_secret: SecretStr | None = None

    # -- hostile input ----------------------------------------------------------------------
    api_max_json_bytes: int = 1 * _MIB
    api_max_request_bytes: int = 1024 * _MIB  # a whole multipart request
    api_max_file_bytes: int = 512 * _MIB  # one file part
    # A client that sends nothing for this long, or whose body takes longer than the
    # total, is cut off (slowloris).
    api_body_idle_timeout_s: float = 15.0
    api_body_total_timeout_s: float = 600.0
    api_max_page_size: int = 100
    # Per tenant, shared by every replica (a row per window in Postgres); 0 disables.
    api_rate_limit_requests: int = 600
    api_rate_limit_window_s: int = 60

    # -- live progress (api/live): SSE and WebSocket streams --------------------------------
    api_live_keepalive_s: float = Field(default=15.0, gt=0,
                                        description="seconds between SSE keep-alive comments")
    api_live_queue_size: int = Field(default=256, ge=1, description=(
        "messages queued per watcher; a watcher further behind is dropped (it resumes)"))
    api_live_max_watchers: int = Field(default=10_000, ge=1,
                                       description="open streams per API process")
    api_live_idle_s: float = Field(default=10.0, gt=0, description=(
        "seconds without a stream after which the live feed stops fetching (the next "
        "stream waits until it follows again)"))
    api_stream_ticket_ttl_s: int = Field(default=60, ge=5, le=3600,
                                         description="lifetime of a browser's stream ticket")

    # -- a Kafka outage must not take reads down ---------------------------------------------
    api_submit_timeout_s: float = 5.0
    # The orphan sweep deletes only objects a report at least this old named (24 h).
    api_orphan_grace_s: float = Field(default=86_400.0, ge=0)

    @field_validator("auth_public_key_files", mode="before")
    @classmethod
    def _split_files(cls, value: object) -> object:
        return split_list(value)

    @model_validator(mode="after")
    def _refuse_insecure_defaults(self) -> Self:
        secret = self.auth_hs256_secret
        if secret is not None and len(secret.get_secret_value().encode()) < 32:
            raise ValueError(
                "TASKSAGA_AUTH_HS256_SECRET must be at least 32 bytes long (e.g. `python -c "
                "'import secrets; print(secrets.token_urlsafe(48))'`)")
        if self.insecure_dev:
            log.warning("TASKSAGA_INSECURE_DEV is set: missing keys are allowed. NEVER in "
                        "production.")
            return self
        if not self.has_token_keys:
            raise ValueError(
                "no way to authenticate callers: set TASKSAGA_AUTH_HS256_SECRET, "
                "TASKSAGA_AUTH_PUBLIC_KEY_FILES, TASKSAGA_AUTH_JWKS_URL or TASKSAGA_AUTH_JWKS_FILE "
                "(or TASKSAGA_INSECURE_DEV=true for development only)")
        if self.task_id_secret is None:
            raise ValueError("set TASKSAGA_TASK_ID_SECRET (32+ random bytes): task ids are "
                             "derived from it (or TASKSAGA_INSECURE_DEV=true for development)")
        return self

    @property
    def has_token_keys(self) -> bool:
        return bool(self.auth_hs256_secret or self.auth_public_key_files or self.auth_jwks_url
                    or self.auth_jwks_file)

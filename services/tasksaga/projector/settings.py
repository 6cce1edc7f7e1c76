from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tasksaga.config import CommonSettings


class ProjectionSettings(BaseSettings):
    """How a projector runs: in this service, or as a thread of the orchestrator (the same
    TASKSAGA_PROJECTOR_* variables for both)."""

    model_config = SettingsConfigDict(env_prefix="TASKSAGA_", extra="ignore")

    # The projector's cache of folded states (bounded by approximate bytes).
    projector_cache_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    # Woken by an append, wait this long before projecting, so one batch covers many
    # commits (the projections are that much staler; 0: project at once).
    projector_gather_ms: int = Field(default=50, ge=0)


class ProjectorSettings(CommonSettings, ProjectionSettings):
    pass

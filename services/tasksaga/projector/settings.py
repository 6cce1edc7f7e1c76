from __future__ import annotations

from pydantic import Field

from tasksaga.config import CommonSettings


class ProjectorSettings(CommonSettings):
    # The projector's cache of folded states (bounded by approximate bytes), as in the
    # orchestrator's projector thread (TASKSAGA_PROJECTOR_CACHE_BYTES there too).
    projector_cache_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    # Woken by an append, wait this long before projecting, so one batch covers many
    # commits (the projections are that much staler; 0: project at once).
    projector_gather_ms: int = Field(default=50, ge=0)

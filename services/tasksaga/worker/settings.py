from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from tasksaga.config import CommonSettings, split_list


class WorkerSettings(CommonSettings):
    # Empty means every queue of the registered tasks.
    worker_queues: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Steps one process runs at once, per queue (threads; steps mostly wait on I/O or on
    # subprocesses such as ffmpeg).
    worker_concurrency: int = 4
    worker_group: str = "worker"
    # On SIGTERM, running steps get this long to finish before the process exits (their
    # commands are then redelivered to another worker).
    worker_shutdown_seconds: float = 20.0
    # When a rebalance moves a partition to another worker, its running steps get this long to
    # finish and have their offsets committed before the partition is given up, so the new
    # owner does not start them again. Keep it under max.poll.interval.ms.
    worker_revoke_drain_seconds: float = Field(default=10.0, ge=0)
    # A worker that does not poll for this long is evicted from its group. The consumer polls
    # while steps run (they run on a pool), so long steps never reach it; it bounds a stuck
    # polling thread.
    worker_max_poll_interval_ms: int = Field(default=600_000, ge=6_000)
    # A step result larger than this (encoded) fails the attempt for good (ResultTooLarge)
    # instead of producing a record the broker would refuse (message.max.bytes, 1 MiB).
    worker_max_result_bytes: int = Field(default=900_000, gt=0)
    # How long the broker may take to acknowledge a result before the worker sends it again.
    worker_delivery_timeout_ms: int = Field(default=30_000, gt=0)
    # A step's start report (its timeout then counts from its start, not its dispatch) is
    # sent only if it still runs this long after starting; shorter steps need none (0: always).
    worker_start_report_delay_ms: int = Field(default=200, ge=0)
    # TASKSAGA_WORKER_INSTANCE_ID: a stable id per worker (a StatefulSet pod name) turns on
    # static group membership; two live workers must never share one.
    worker_instance_id: str | None = None
    # Skip commands whose answer the projections already show (worker/finished_steps.py).
    worker_skip_finished: bool = True
    # ... asked of commands already in their partition when this worker got it, and of
    # others dispatched at least this long ago (finished_steps.py, worth_asking): a fresh one
    # cannot have been answered elsewhere. 0: ask of every command.
    worker_ask_finished_after_ms: int = Field(default=1_000, ge=0)
    # Verified artifact parts (8 MiB each) kept in memory for later reads on this worker,
    # keyed by checksum; 0 turns the cache off.
    worker_artifact_cache_bytes: int = Field(default=128 * 1024 * 1024, ge=0)

    # TASKSAGA_WORKER_CAPABILITIES: what this worker has (ffmpeg,gpu): it consumes the
    # topics of the steps requiring them (docs/dsl.md, "Capabilities"). Detected ones (ffmpeg
    # on PATH) are added unless TASKSAGA_WORKER_DETECT_CAPABILITIES is false.
    worker_capabilities: Annotated[list[str], NoDecode] = Field(default_factory=list)
    worker_detect_capabilities: bool = True

    @field_validator("worker_queues", "worker_capabilities", mode="before")
    @classmethod
    def _split_queues(cls, value: object) -> object:
        return split_list(value)

from __future__ import annotations

from pydantic import Field, field_validator

from tasksaga.config import CommonSettings


class WorkerSettings(CommonSettings):
    # Empty means every queue of the registered tasks.
    worker_queues: list[str] = Field(default_factory=list)
    # Consumers per process; each runs one step at a time.
    worker_concurrency: int = 2
    worker_group: str = "worker"
    # A handler may run this long without the consumer polling (Kafka's max.poll.interval).
    worker_max_step_seconds: int = 1800

    @field_validator("worker_queues", mode="before")
    @classmethod
    def _split_queues(cls, value: object) -> object:
        if isinstance(value, str) and not value.startswith("["):
            return [q.strip() for q in value.split(",") if q.strip()]
        return value

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from tasksaga.config import CommonSettings, split_list


class WorkerSettings(CommonSettings):
    # Empty means every queue of the registered tasks.
    worker_queues: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Consumers per process; each runs one step at a time.
    worker_concurrency: int = 2
    worker_group: str = "worker"
    # A handler may run this long without the consumer polling (Kafka's max.poll.interval).
    worker_max_step_seconds: int = 1800
    # On SIGTERM, running steps get this long to finish before the process exits (their
    # commands are then redelivered to another worker).
    worker_shutdown_seconds: float = 20.0

    @field_validator("worker_queues", mode="before")
    @classmethod
    def _split_queues(cls, value: object) -> object:
        return split_list(value)

"""The declared shape of a task's steps: steps, parallel groups, and the stages they form.

``TaskDefinition`` (``tasksaga.core.definition``) builds these from its declarations; the
saga rules (``tasksaga.core.decide``) read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from tasksaga.core.context import SagaContext, StepContext
from tasksaga.core.retry import RetryPolicy

StepHandler = Callable[[StepContext[Any]], BaseModel | None]
CompensationHandler = Callable[[StepContext[Any], Any], None]
ResponseBuilder = Callable[[SagaContext[Any]], BaseModel]
ConditionFunction = Callable[[SagaContext[Any]], bool]
ConditionSummary = Callable[[SagaContext[Any]], str]


class Placement(StrEnum):
    API = "api"
    WORKER = "worker"


class AwaitMode(StrEnum):
    """When a parallel group is done: all members, the first success, or N successes."""

    ALL = "all"
    ANY = "any"
    QUORUM = "quorum"


@dataclass(frozen=True)
class StepCondition:
    description: str
    function: ConditionFunction | None
    summary: ConditionSummary | None = None

    @property
    def function_name(self) -> str:
        return getattr(self.function, "__qualname__", repr(self.function))


@dataclass(frozen=True)
class FileUpload:
    bucket: str
    source: str


@dataclass
class StepDef:
    name: str
    order: int
    placement: Placement = Placement.WORKER
    queue: str | None = None
    group: str | None = None
    data_type: type[BaseModel] | None = None
    retry: RetryPolicy | None = None
    compensation_retry: RetryPolicy | None = None
    timeout_seconds: float | None = None
    heartbeat_timeout_seconds: float | None = None
    condition: StepCondition | None = None
    upload: FileUpload | None = None
    handler: StepHandler | None = None
    compensation: CompensationHandler | None = None
    # The earlier steps whose data the handler (and its compensation) reads: only their data
    # travels in the step's commands. None: every completed step's data (commands then grow
    # with the task).
    reads: tuple[str, ...] | None = None
    # The point of no return: once this step completes, the task only goes forward (later
    # failures are retried, then left to an operator), and nothing before it is compensated.
    pivot: bool = False

    @property
    def has_compensation(self) -> bool:
        # A file upload is undone by deleting what it stored, without user code.
        return self.compensation is not None or self.upload is not None


@dataclass(frozen=True)
class GroupDef:
    name: str
    order: int
    mode: AwaitMode = AwaitMode.ALL
    quorum: int | None = None


@dataclass(frozen=True)
class Stage:
    """Steps that start together; the next stage starts when this one is satisfied."""

    order: int
    steps: tuple[StepDef, ...]
    mode: AwaitMode = AwaitMode.ALL
    quorum: int | None = None
    group: str | None = None

    def required_successes(self, skipped: int) -> int:
        eligible = len(self.steps) - skipped
        if self.mode is AwaitMode.ALL:
            return eligible
        if self.mode is AwaitMode.ANY:
            return min(1, eligible)
        return min(self.quorum or 1, eligible)

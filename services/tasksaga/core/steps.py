"""The declared shape of a task's steps: steps, parallel groups, and the stages they form.

``TaskDefinition`` (``tasksaga.core.definition``) builds these from its declarations; the
saga rules (``tasksaga.core.decide``) read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from tasksaga.core.context import SagaContext, StepContext
from tasksaga.core.retry import RetryPolicy

if TYPE_CHECKING:
    from tasksaga.core.fan_out_shape import ForEach

StepHandler = Callable[[StepContext[Any]], BaseModel | None]
CompensationHandler = Callable[[StepContext[Any], Any], None]
ResponseBuilder = Callable[[SagaContext[Any]], BaseModel]
ConditionFunction = Callable[[SagaContext[Any]], bool]
ConditionSummary = Callable[[SagaContext[Any]], str]


class PointInTime(Protocol):
    """A datetime, seen structurally: the core imports no clock module."""

    @property
    def tzinfo(self) -> object: ...

    def timestamp(self) -> float: ...

    def isoformat(self) -> str: ...


#: When a sleep step wakes: epoch milliseconds, or a timezone-aware datetime.
SleepUntil = Callable[[SagaContext[Any]], "int | PointInTime"]


class Placement(StrEnum):
    API = "api"
    WORKER = "worker"
    # wait_for and sleep steps: no worker runs them, the orchestrator completes them when the
    # signal arrives or the durable timer fires.
    ORCHESTRATOR = "orchestrator"


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


@dataclass(frozen=True)
class SignalWait:
    """A human step: wait for ``POST /tasks/{id}/signals/{step name}``; ``timeout_seconds``
    (None: wait for ever) takes the failure path when it passes first."""

    timeout_seconds: float | None = None


@dataclass(frozen=True)
class Sleep:
    """A durable sleep: ``seconds`` from the moment it is reached, or ``until`` (evaluated by
    the orchestrator with the saga's context when the step is reached)."""

    seconds: float | None = None
    until: SleepUntil | None = None


#: Builds a child task's request from the parent's context (typed request, earlier step data).
ChildRequestBuilder = Callable[[SagaContext[Any]], BaseModel]


@dataclass(frozen=True)
class ChildTask:
    """A step that starts another task type and waits for its end (``tasksaga.core.children``):
    its data is the child's response; compensating it compensates the child."""

    task_type: str
    build_request: ChildRequestBuilder
    # The child's request and response models when the definition itself was given (checked
    # by tasksaga-check); None when only its name was.
    request_type: type[BaseModel] | None = None
    response_type: type[BaseModel] | None = None


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
    signal: SignalWait | None = None
    sleep: Sleep | None = None
    child: ChildTask | None = None
    # A dynamic fan-out: one instance of this step per item (tasksaga.core.fan_out_shape).
    for_each: ForEach | None = None
    # The capabilities a worker must have to run it (and its compensation): its commands go
    # to the topic of (queue, requires), tasksaga.core.capabilities.
    requires: frozenset[str] = frozenset()

    @property
    def has_compensation(self) -> bool:
        # A file upload is undone by deleting what it stored, without user code; a child
        # step by compensating the child task.
        return (self.compensation is not None or self.upload is not None
                or self.child is not None)


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

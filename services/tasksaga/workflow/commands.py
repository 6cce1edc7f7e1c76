"""What a workflow body asks for (commands), how its history records them, and how a body
ends (outcomes): the vocabulary the driver and the workflow's decide share."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from tasksaga.core import events as ev
from tasksaga.core.retry import RetryPolicy
from tasksaga.workflow.definition import WorkflowStep
from tasksaga.workflow.errors import WorkflowCancelled, WorkflowError


class Kind(StrEnum):
    STEP = "step"
    SLEEP = "sleep"
    SIGNAL = "signal"
    RECORD = "record"
    CHILD = "child"
    COMPENSATE = "compensate child"


@dataclass(frozen=True)
class Recorded:
    """A command as the history records it."""

    kind: Kind
    name: str
    value_json: str = ""

    def describe(self) -> str:
        return f"{self.kind} {self.name!r}"


@dataclass(frozen=True)
class Command:
    """What the body asked for at one await, in the order it asked."""

    kind: Kind
    name: str
    index: int  # 1-based position among the workflow's commands
    location: str
    step: WorkflowStep[Any, Any] | None = None
    argument_json: str = "null"
    retry: RetryPolicy | None = None
    duration_ms: int = 0
    timeout_ms: int | None = None
    value_json: str = ""
    record_kind: str = ""
    child_type: str = ""  # a child: the task type it starts
    response_type: type[BaseModel] | None = None  # ... and the model of its response

    def describe(self) -> str:
        return f"{self.kind} {self.name!r}"


@dataclass(frozen=True)
class Completed:
    response_json: str


@dataclass(frozen=True)
class Failed:
    reason: str


@dataclass(frozen=True)
class Cancelled:
    reason: str


@dataclass(frozen=True)
class Divergence:
    index: int
    location: str
    expected: str
    got: str


Outcome = Completed | Failed | Cancelled | Divergence


def failed_outcome(cancelled: str | None, raised: Exception) -> Outcome:
    """How a body that raised ends: Cancelled once a cancellation was delivered to it."""
    if cancelled is not None:
        if isinstance(raised, WorkflowCancelled):
            return Cancelled(raised.reason)
        return Cancelled(f"{cancelled}; then {type(raised).__name__}: {raised}")
    return Failed(f"{type(raised).__name__}: {raised}")


def completed_outcome(response_type: type[BaseModel] | None, value: Any) -> Outcome:
    """How a body that returned ``value`` ends; WorkflowError for a value of the wrong type."""
    if value is None and response_type is None:
        return Completed("{}")
    if response_type is not None and not isinstance(value, response_type):
        raise WorkflowError(f"the body returned {type(value).__name__}, not "
                            f"{response_type.__name__}")
    if not isinstance(value, BaseModel):
        raise WorkflowError(f"the body returned {type(value).__name__}: return a "
                            "pydantic model (or None)")
    return Completed(value.model_dump_json())


def recorded_command(event: ev.TaskEvent) -> Recorded | None:
    """The command an event records, if it is the first event of one."""
    match event:
        case ev.StepDispatched(attempt=1):
            return Recorded(Kind.STEP, event.step)
        case ev.StepWaiting(attempt=1):
            return Recorded(Kind.SLEEP if event.waiting_for == "time" else Kind.SIGNAL,
                            event.step)
        case ev.WorkflowValueRecorded():
            return Recorded(Kind.RECORD, event.name, event.data_json)
        case ev.ChildTaskStarted(attempt=1):
            return Recorded(Kind.CHILD, event.step)
        case ev.StepCompensationDispatched(attempt=1):  # a workflow compensates children only
            return Recorded(Kind.COMPENSATE, event.step)
    return None


def dump_argument(argument: Any) -> str:
    """A step's or a child's argument as its command carries it (JSON)."""
    if argument is None:
        return "null"
    if isinstance(argument, BaseModel):
        return argument.model_dump_json()
    return json.dumps(argument)


def parse_result(signal_types: Mapping[str, type[BaseModel] | None], command: Command,
                 data_json: str) -> Any:
    """What an awaited command resolves to in the body: its result, parsed to the type the
    body declared (a step's data model, a child's response, a signal's model)."""
    if command.kind is Kind.STEP and command.step is not None:
        return command.step.parse_result(data_json)
    if command.kind is Kind.CHILD:
        if command.response_type is None:
            return json.loads(data_json)
        return command.response_type.model_validate_json(data_json)
    if command.kind is Kind.SIGNAL:
        model = signal_types.get(command.name)
        return None if model is None else model.model_validate_json(data_json)
    return None

"""Code-first durable workflows on the saga's event log (docs/workflows.md).

A workflow is an ``async def`` registered with ``@workflow``; its steps are ``@step``
functions that run on the step workers. The orchestrator replays the body against the task's
history, so it resumes after any crash without re-running what completed.
"""

from tasksaga.workflow.context import WorkflowContext
from tasksaga.workflow.definition import WorkflowDefinition, WorkflowStep, step, workflow
from tasksaga.workflow.errors import (
    ChildCompensationFailed,
    ChildFailed,
    SignalTimedOut,
    StepFailed,
    WorkflowCancelled,
    WorkflowError,
)
from tasksaga.workflow.futures import ChildRun

__all__ = [
    "ChildCompensationFailed",
    "ChildFailed",
    "ChildRun",
    "SignalTimedOut",
    "StepFailed",
    "WorkflowCancelled",
    "WorkflowContext",
    "WorkflowDefinition",
    "WorkflowError",
    "WorkflowStep",
    "step",
    "workflow",
]

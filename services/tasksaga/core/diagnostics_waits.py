"""Checks of the steps the orchestrator completes itself: wait_for and sleep (TS130-TS133,
docs/diagnostics.md)."""

from __future__ import annotations

import inspect

from pydantic import BaseModel

from tasksaga.core.definition import Diagnostic, TaskDefinition
from tasksaga.core.steps import StepDef


def wait_steps(definition: TaskDefinition) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for step in definition.steps:
        if step.signal is not None:
            found += _signal_wait(step)
        if step.sleep is not None:
            found += _sleep(step)
        if (step.signal or step.sleep) and (step.compensation or step.retry
                                            or step.compensation_retry):
            found.append(Diagnostic(
                "TS133", f"{_kind(step)} step {step.name!r} is given a compensation or a retry "
                         "policy: no worker runs it, the orchestrator completes it, so there is "
                         "nothing to undo or retry; remove them (a timed-out wait fails the "
                         "task's earlier steps' way: they are compensated)"))
    return found


def _kind(step: StepDef) -> str:
    return "wait_for" if step.signal is not None else "sleep"


def _signal_wait(step: StepDef) -> list[Diagnostic]:
    assert step.signal is not None
    found = []
    data = step.data_type
    if data is not None and not (isinstance(data, type) and issubclass(data, BaseModel)):
        found.append(Diagnostic(
            "TS130", f"wait_for step {step.name!r} takes data={data!r}, which is not a "
                     "pydantic model class: the signal's body is validated against it"))
    timeout = step.signal.timeout_seconds
    if timeout is not None and not timeout > 0:
        found.append(Diagnostic(
            "TS131", f"wait_for step {step.name!r} has timeout_seconds={timeout!r}: give a "
                     "positive number of seconds, or None to wait without a timeout"))
    return found


def _sleep(step: StepDef) -> list[Diagnostic]:
    assert step.sleep is not None
    seconds, until = step.sleep.seconds, step.sleep.until
    if (seconds is None) == (until is None):
        return [Diagnostic(
            "TS132", f"sleep step {step.name!r} needs exactly one of seconds= and until=")]
    if seconds is not None and not seconds > 0:
        return [Diagnostic(
            "TS131", f"sleep step {step.name!r} has seconds={seconds!r}: give a positive "
                     "number of seconds")]
    if until is not None and not _takes_one_argument(until):
        return [Diagnostic(
            "TS132", f"until= of sleep step {step.name!r} must be a function taking one "
                     "SagaContext argument and returning epoch milliseconds or a datetime")]
    return []


def _takes_one_argument(function: object) -> bool:
    if not callable(function):
        return False
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in parameters if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) == 1

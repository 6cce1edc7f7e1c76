"""Diagnostics of handler signatures and retry policies: mistakes that would otherwise fail
only at run time, on a worker, after the task was accepted."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from tasksaga.core.definition import Diagnostic, TaskDefinition
from tasksaga.core.retry import RetryPolicy
from tasksaga.core.steps import Placement

#: Error types the orchestrator itself records (timeouts), so policies may name them.
ORCHESTRATOR_ERRORS = frozenset({"StepTimedOut", "HeartbeatMissed", "CompensationTimedOut"})


def handler_signatures(definition: TaskDefinition) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for step in definition.steps:
        if step.handler is not None and step.upload is None:
            required = _required_positional(step.handler)
            if required is not None and required != 1:
                found.append(Diagnostic(
                    "TS123", f"handler of step {step.name!r} takes {required} required "
                             "arguments; a step handler takes exactly one, its StepContext"))
            if (step.placement is Placement.WORKER and step.data_type is None
                    and _return_annotation(step.handler) is inspect.Signature.empty):
                found.append(Diagnostic(
                    "TS121", f"handler of step {step.name!r} has no return annotation: annotate "
                             "it (`-> MyData` or `-> None`) or pass data=, so ctx.data() can "
                             "find its data"))
        if step.compensation is not None:
            required = _required_positional(step.compensation)
            if required is not None and required != 2:
                found.append(Diagnostic(
                    "TS120", f"compensation of step {step.name!r} takes {required} required "
                             "arguments; a compensation takes exactly two: (ctx, data)"))
    # A for_each step's data is a list, read with ctx.results_of: never found by ctx.data(T).
    single = [s for s in definition.steps if s.for_each is None]
    shared = Counter(s.data_type for s in single if s.data_type is not None)
    for data_type, count in shared.items():
        if count > 1:
            names = ", ".join(repr(s.name) for s in single if s.data_type is data_type)
            found.append(Diagnostic(
                "TS122", f"steps {names} return the same data type {data_type.__name__}: "
                         f"ctx.data({data_type.__name__}) is ambiguous, read them with "
                         "ctx.data_of(step, type)", severity="warning"))
    return found


def retry_policies(definition: TaskDefinition) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    if definition.retry_conflict:
        found.append(Diagnostic(
            "TS125", f"task {definition.name!r} is given both max_retries= and retry=: the "
                     "policy wins and max_retries is ignored; give only one"))
    known = _exception_names() | ORCHESTRATOR_ERRORS
    for where, policy in _policies(definition):
        if policy.max_delay_ms < policy.delay_ms:
            found.append(Diagnostic(
                "TS124", f"{where}: max_delay_ms ({policy.max_delay_ms}) is below delay_ms "
                         f"({policy.delay_ms}), so no delay is ever {policy.delay_ms} ms"))
        for name in (*policy.retry_on_names, *policy.never_retry_names):
            if name not in known:
                found.append(Diagnostic(
                    "TS126", f"{where} names {name!r}, which is no exception class loaded in "
                             "this process; check the spelling, or pass the class itself"))
    return found


def _policies(definition: TaskDefinition) -> Iterator[tuple[str, RetryPolicy]]:
    yield f"the retry policy of task {definition.name!r}", definition.default_retry
    for step in definition.steps:
        if step.retry is not None:
            yield f"the retry policy of step {step.name!r}", step.retry
        if step.compensation_retry is not None:
            yield f"the compensation retry policy of step {step.name!r}", step.compensation_retry


def _exception_names() -> set[str]:
    names: set[str] = set()
    pending: list[type[BaseException]] = [BaseException]
    while pending:
        cls = pending.pop()
        if cls.__name__ not in names:
            names.add(cls.__name__)
            pending.extend(cls.__subclasses__())
    return names


def _required_positional(function: Callable[..., Any]) -> int | None:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    return sum(1 for p in parameters if p.default is inspect.Parameter.empty
               and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _return_annotation(function: Callable[..., Any]) -> Any:
    try:
        return inspect.signature(function).return_annotation
    except (TypeError, ValueError):
        return None

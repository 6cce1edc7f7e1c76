"""Checks of child steps and depends_on (TS150-TS159, docs/diagnostics.md).

``child_steps`` checks one definition (run by ``diagnose``); ``task_links`` checks what only
the whole set of deployed definitions shows: an unknown child or upstream type, a depends_on
cycle, a downstream request the upstream's response cannot fill, a child with API steps.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable

from pydantic import BaseModel

from tasksaga.core.definition import Diagnostic, TaskDefinition
from tasksaga.core.steps import ChildTask, StepDef

_NOT_FOR_CHILD_STEPS = {"compensation": "a compensation", "retry": "a retry policy",
                        "compensation_retry": "a compensation retry policy"}


def child_steps(definition: TaskDefinition) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    attached = {(kind, name) for kind, name in definition.attachments}
    for step in definition.steps:
        if step.child is None:
            continue
        found += _builder(step, step.child, step.child.request_type)
        if step.child.task_type == definition.name:
            found.append(Diagnostic(
                "TS156", f"child step {step.name!r} starts a task of its own type "
                         f"{definition.name!r}: every child would start another, for ever"))
        for kind, what in _NOT_FOR_CHILD_STEPS.items():
            if (kind, step.name) in attached or (kind == "retry" and step.retry) or (
                    kind == "compensation_retry" and step.compensation_retry):
                found.append(Diagnostic(
                    "TS155", f"child step {step.name!r} is given {what}: the child task "
                             "compensates and retries its own steps (compensating this step "
                             "compensates the child); remove it"))
    if definition.depends_on == definition.name:
        found.append(Diagnostic(
            "TS152", f"{definition.name!r} depends_on itself: each completion would start "
                     "another, for ever"))
    return found


def _builder(step: StepDef, child: ChildTask,
             request_type: type[BaseModel] | None) -> list[Diagnostic]:
    """The request builder takes the SagaContext alone and returns the child's request."""
    builder = child.build_request
    wrong = [Diagnostic(
        "TS151", f"request= of child step {step.name!r} must be a function taking one "
                 f"SagaContext argument and returning the {child.task_type} request"
                 + (f" ({request_type.__name__})" if request_type else ""))]
    if not callable(builder):
        return wrong
    try:
        parameters = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return wrong
    required = [p for p in parameters if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(required) != 1:
        return wrong
    returned = _returned(builder)
    if request_type is not None and isinstance(returned, type) and \
            not issubclass(returned, request_type):
        return [Diagnostic(
            "TS151", f"request= of child step {step.name!r} returns {returned.__name__}, but "
                     f"{child.task_type} takes a {request_type.__name__} request")]
    return []


def _returned(function: object) -> object:
    try:
        return typing.get_type_hints(function).get("return")
    except Exception:  # unresolved forward references: nothing to compare
        return None


def task_links(definitions: Iterable[TaskDefinition]) -> list[tuple[str, Diagnostic]]:
    """(task type, diagnostic) for the links between ``definitions`` (newest of each type)."""
    by_name = {d.name: d for d in definitions}
    found: list[tuple[str, Diagnostic]] = []
    for definition in by_name.values():
        for step in definition.steps:
            if step.child is not None:
                found += [(definition.name, d) for d in _child_link(step, step.child, by_name)]
        found += [(definition.name, d) for d in _started_by_code(definition, by_name)]
        upstream_name = definition.depends_on
        if upstream_name is None:
            continue
        upstream = by_name.get(upstream_name)
        if upstream is None:
            found.append((definition.name, Diagnostic(
                "TS154", f"depends_on names unknown task type {upstream_name!r}; known: "
                         f"{sorted(by_name)}")))
            continue
        found += [(definition.name, d) for d in _hand_over(upstream, definition)]
        found += [(definition.name, d) for d in _api_steps(definition, "depends_on")]
    found += _cycles(by_name)
    return found


def _child_link(step: StepDef, child: ChildTask,
                by_name: dict[str, TaskDefinition]) -> list[Diagnostic]:
    target = by_name.get(child.task_type)
    if target is None:
        return [Diagnostic(
            "TS150", f"child step {step.name!r} starts unknown task type "
                     f"{child.task_type!r}; known: {sorted(by_name)} (deploy its module "
                     "with this one)")]
    found = _api_steps(target, f"child step {step.name!r}")
    if not target.cancellable:
        found.append(Diagnostic(
            "TS157", f"child step {step.name!r} starts {target.name!r}, which is not "
                     "cancellable: cancelling this task waits for the child to finish, then "
                     "compensates it", "warning"))
    if child.request_type is None:  # named by string: check the builder against it now
        found += _builder(step, child, target.request_type)
    return found


def _started_by_code(definition: TaskDefinition,
                     by_name: dict[str, TaskDefinition]) -> list[Diagnostic]:
    """The children a workflow body starts (``wf.child``), as its source names them."""
    started = getattr(definition, "started_child_types", None)
    found: list[Diagnostic] = []
    for where, task_type in started() if started is not None else []:
        target = by_name.get(task_type)
        if target is None:
            found.append(Diagnostic(
                "TS150", f"{where} starts unknown task type {task_type!r}; known: "
                         f"{sorted(by_name)} (deploy its module with this one)"))
        else:
            found += _api_steps(target, where)
            if not target.cancellable:
                found.append(Diagnostic(
                    "TS157", f"{where} starts {task_type!r}, which is not cancellable: "
                             "cancelling the workflow does not stop the child, which "
                             "completes on its own (recorded as a surplus)", "warning"))
    return found


def _api_steps(target: TaskDefinition, started_by: str) -> list[Diagnostic]:
    api = [s.name for s in target.api_steps()]
    if not api:
        return []
    return [Diagnostic(
        "TS158", f"{target.name!r}, started by {started_by}, has API steps {api}: they run "
                 "only when the API accepts a submission, so a task started by another "
                 "would fail at once (MissingApiStep); move them to worker steps")]


def _hand_over(upstream: TaskDefinition, downstream: TaskDefinition) -> list[Diagnostic]:
    """The upstream's response must be a valid downstream request."""
    response, request = upstream.response_type, downstream.request_type
    if response is not None and issubclass(response, request):
        return []
    given = response.model_fields if response is not None else {}
    problems = []
    for name, field in request.model_fields.items():
        if name not in given:
            if field.is_required():
                problems.append(f"{name!r} is missing")
        elif given[name].annotation != field.annotation:
            problems.append(f"{name!r} is {_type_name(given[name].annotation)}, the request "
                            f"wants {_type_name(field.annotation)}")
    if not problems:
        return []
    what = response.__name__ if response is not None else "no response model"
    return [Diagnostic(
        "TS153", f"depends_on {upstream.name!r}: its response ({what}) is this task's request "
                 f"({request.__name__}), but {'; '.join(problems)}")]


def _type_name(annotation: object) -> str:
    return getattr(annotation, "__name__", repr(annotation))


def _cycles(by_name: dict[str, TaskDefinition]) -> list[tuple[str, Diagnostic]]:
    """depends_on chains that come back to where they started (self loops: TS152 of
    ``child_steps``), and child steps that start each other (a warning: a condition may end
    the recursion)."""
    found: list[tuple[str, Diagnostic]] = []
    seen: set[frozenset[str]] = set()
    for name in by_name:
        chain, current = [name], by_name[name].depends_on
        while current is not None and current in by_name and current not in chain:
            chain.append(current)
            current = by_name[current].depends_on
        if current == name and len(chain) > 1 and frozenset(chain) not in seen:
            seen.add(frozenset(chain))
            found.append((name, Diagnostic(
                "TS152", f"depends_on cycle {' -> '.join([*chain, name])}: every completion "
                         "would start the next, for ever")))
    for name, definition in by_name.items():
        for step in definition.steps:
            child = by_name.get(step.child.task_type) if step.child else None
            if child is None or child.name == name:
                continue
            if any(s.child is not None and s.child.task_type == name for s in child.steps):
                found.append((name, Diagnostic(
                    "TS159", f"child step {step.name!r} starts {child.name!r}, which starts "
                             f"{name!r} again: unless a condition ends it, the nesting never "
                             "does", "warning")))
    return found

"""Checks a task definition before it is accepted, reporting every problem with a code.

Codes are listed in docs/diagnostics.md.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from tasksaga.core.definition import Diagnostic, Placement, TaskDefinition, UploadedFile


def diagnose(definition: TaskDefinition) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    found += _duplicate_names(definition)
    if not definition.declared_steps:
        found.append(Diagnostic("TS102", "the task declares no steps; add at least one step"))
    found += _placement_order(definition)
    found += _upload_sources(definition)
    found += _handlers(definition)
    found += _conditions(definition)
    if definition.response_type is not None and definition.build_response is None:
        found.append(
            Diagnostic(
                "TS108",
                f"response type {definition.response_type.__name__} is declared but no "
                "@task.response_builder builds it",
            )
        )
    return found


def _duplicate_names(definition: TaskDefinition) -> list[Diagnostic]:
    seen: set[str] = set()
    found = []
    for step in definition.declared_steps:
        if step.name in seen:
            found.append(Diagnostic("TS101", f"step name {step.name!r} is declared twice"))
        seen.add(step.name)
    return found


def _placement_order(definition: TaskDefinition) -> list[Diagnostic]:
    first_worker = min(
        (s.order for s in definition.steps if s.placement is Placement.WORKER), default=None
    )
    return [
        Diagnostic(
            "TS103",
            f"API-placed step {s.name!r} (order {s.order}) comes after a worker step "
            f"(order {first_worker}); API steps run at submission, so order them first",
        )
        for s in definition.steps
        if s.placement is Placement.API and first_worker is not None and s.order >= first_worker
    ]


def _is_file_annotation(annotation: Any) -> bool:
    if annotation is UploadedFile:
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list and args:
        return args[0] is UploadedFile
    return False


def _upload_sources(definition: TaskDefinition) -> list[Diagnostic]:
    fields = definition.request_type.model_fields
    found = []
    for step in definition.upload_steps():
        assert step.upload is not None
        field = fields.get(step.upload.source)
        if field is None or not _is_file_annotation(field.annotation):
            found.append(
                Diagnostic(
                    "TS104",
                    f"upload step {step.name!r} takes request field {step.upload.source!r}, "
                    f"which is not a field of type UploadedFile or list[UploadedFile] of "
                    f"{definition.request_type.__name__}",
                )
            )
    return found


def _handlers(definition: TaskDefinition) -> list[Diagnostic]:
    return [
        Diagnostic("TS106", f"worker step {s.name!r} has no handler function")
        for s in definition.steps
        if s.placement is Placement.WORKER and s.handler is None
    ]


def _conditions(definition: TaskDefinition) -> list[Diagnostic]:
    found = []
    for step in definition.steps:
        condition = step.condition
        if condition is None:
            continue
        if step.placement is Placement.API:
            found.append(
                Diagnostic("TS107", f"API step {step.name!r} cannot have a condition")
            )
        if not callable(condition.function) or not _takes_one_argument(condition.function):
            found.append(
                Diagnostic(
                    "TS109",
                    f"condition {condition.description!r} of step {step.name!r} must be a "
                    "function taking one SagaContext argument and returning bool",
                )
            )
    return found


def _takes_one_argument(function: Any) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [
        p for p in parameters
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(required) == 1

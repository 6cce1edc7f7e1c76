"""Checks a task definition before it is accepted, reporting every problem with a code.

The Python counterpart of the seed DSL's compile-time diagnostics; codes are listed in
docs/diagnostics.md.
"""

from __future__ import annotations

import inspect
import typing
from collections import Counter
from typing import Any

from tasksaga.core.capabilities import invalid_capabilities
from tasksaga.core.definition import Diagnostic, TaskDefinition
from tasksaga.core.diagnostics_children import child_steps
from tasksaga.core.diagnostics_fan_out import fan_out_steps
from tasksaga.core.diagnostics_handlers import handler_signatures, retry_policies
from tasksaga.core.diagnostics_waits import wait_steps
from tasksaga.core.request_fields import UploadedFile
from tasksaga.core.steps import AwaitMode, Placement

_ATTACHMENT_CODES = {
    "compensation": ("TS105", "compensation"),
    "compensation_retry": ("TS115", "compensation retry policy"),
    "retry": ("TS115", "retry policy"),
    "condition": ("TS114", "condition"),
}


def diagnose(definition: TaskDefinition) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    found += _duplicate_names(definition)
    if not definition.declared_steps:
        found.append(Diagnostic("TS102", "the task declares no steps; add at least one step"))
    found += _placement_order(definition)
    found += _upload_sources(definition)
    found += _handlers(definition)
    found += _conditions(definition)
    found += _attachments(definition)
    found += _groups(definition)
    found += _reads(definition)
    found += _pivots(definition)
    found += handler_signatures(definition)
    found += retry_policies(definition)
    found += wait_steps(definition)
    found += child_steps(definition)
    found += fan_out_steps(definition)
    found += [
        Diagnostic("TS195", f"step {step.name!r} requires invalid capability name(s) "
                            f"{', '.join(bad)}: a capability is 1 to 32 lowercase letters, "
                            "digits or underscores starting with a letter (e.g. ffmpeg, gpu)")
        for step in definition.steps if (bad := invalid_capabilities(step.requires))
    ]
    found += [
        Diagnostic("TS118", f"roles given for unknown action {name!r}; the actions are "
                            "submit, read, cancel, operate and signal")
        for name in definition.roles.unknown_actions
    ]
    if definition.response_type is not None and definition.build_response is None:
        found.append(Diagnostic(
            "TS108",
            f"response type {definition.response_type.__name__} is declared but no "
            "@task.response_builder builds it",
        ))
    # A definition of another programming model (a code-first workflow, tasksaga.workflow)
    # drops the saga checks that do not apply to it and adds its own (TS180-TS189).
    own = getattr(definition, "own_diagnostics", None)
    return list(own(found)) if callable(own) else found


def _reads(definition: TaskDefinition) -> list[Diagnostic]:
    """A step reads only steps that complete before it starts (an earlier order)."""
    order = {s.name: s.order for s in definition.steps}
    return [
        Diagnostic("TS119", f"step {step.name!r} reads {name!r}, which is not a step ordered "
                            f"before it; name only earlier steps in reads=")
        for step in definition.steps for name in step.reads or ()
        if order.get(name, step.order) >= step.order
    ]


def _pivots(definition: TaskDefinition) -> list[Diagnostic]:
    """One pivot, alone in its stage, and nothing on or after it that compensation would undo:
    past the pivot nothing is ever compensated, so such a compensation would never run."""
    pivots = definition.pivots()
    if not pivots:
        return []
    found = [
        Diagnostic("TS129", f"step {extra.name!r} is a second pivot: the first, "
                            f"{pivots[0].name!r}, already makes every later step forward-only; "
                            "declare one pivot")
        for extra in pivots[1:]
    ]
    for pivot in pivots:
        stage = definition.stage_of(pivot.name)
        if pivot.group is not None or len(stage.steps) > 1:
            others = sorted(s.name for s in stage.steps if s.name != pivot.name)
            found.append(Diagnostic(
                "TS128", f"pivot step {pivot.name!r} is in a parallel "
                         f"{'group ' + repr(pivot.group) if pivot.group else 'stage'} (order "
                         f"{pivot.order}, with {others}): a point of no return must be a stage of "
                         "its own, so that nothing runs beside it; give it its own order"))
    first = pivots[0]
    found += [
        Diagnostic("TS127", f"step {step.name!r} declares a compensation but "
                            + ("is the pivot" if step is first else
                               f"comes after the pivot {first.name!r} (order {first.order})")
                            + ": past the point of no return nothing is compensated, so it would"
                            " never run; remove it, or move the pivot after this step")
        for step in definition.steps
        if step.compensation is not None and step.order >= first.order
    ]
    return found


def _duplicate_names(definition: TaskDefinition) -> list[Diagnostic]:
    counts = Counter(s.name for s in definition.declared_steps)
    found = [Diagnostic("TS101", f"step name {name!r} is declared {n} times")
             for name, n in counts.items() if n > 1]
    groups = Counter(g.name for g in definition.declared_groups)
    found += [Diagnostic("TS101", f"group name {name!r} is declared {n} times")
              for name, n in groups.items() if n > 1]
    return found


def _placement_order(definition: TaskDefinition) -> list[Diagnostic]:
    first_worker = min(
        (s.order for s in definition.steps if s.placement is not Placement.API), default=None
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
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) is list and bool(args) and args[0] is UploadedFile


def _upload_sources(definition: TaskDefinition) -> list[Diagnostic]:
    fields = definition.request_type.model_fields
    found = []
    for step in definition.upload_steps():
        assert step.upload is not None
        field = fields.get(step.upload.source)
        if field is None or not _is_file_annotation(field.annotation):
            found.append(Diagnostic(
                "TS104",
                f"upload step {step.name!r} takes request field {step.upload.source!r}, "
                f"which is not a field of type UploadedFile or list[UploadedFile] of "
                f"{definition.request_type.__name__}",
            ))
    return found


def _handlers(definition: TaskDefinition) -> list[Diagnostic]:
    return [
        Diagnostic("TS106", f"step {s.name!r} has no handler function")
        for s in definition.steps
        if s.handler is None and s.upload is None and s.placement is not Placement.ORCHESTRATOR
    ]


def _conditions(definition: TaskDefinition) -> list[Diagnostic]:
    found = []
    for step in definition.steps:
        condition = step.condition
        if condition is None:
            continue
        if step.placement is Placement.API:
            found.append(Diagnostic("TS107", f"API step {step.name!r} cannot have a condition"))
        if condition.function is None:
            found.append(Diagnostic(
                "TS116",
                f"condition {condition.description!r} of step {step.name!r} has no function",
            ))
        elif not callable(condition.function) or not _takes_one_argument(condition.function):
            found.append(Diagnostic(
                "TS109",
                f"condition {condition.description!r} of step {step.name!r} must be a "
                "function taking one SagaContext argument and returning bool",
            ))
    return found


def _attachments(definition: TaskDefinition) -> list[Diagnostic]:
    found = []
    known = sorted(s.name for s in definition.steps)
    for kind, step in definition.attachments:
        if not definition.has_step(step):
            code, what = _ATTACHMENT_CODES[kind]
            found.append(Diagnostic(code, f"{what} names unknown step {step!r} (steps: {known})"))
    return found


def _groups(definition: TaskDefinition) -> list[Diagnostic]:
    found = []
    groups = definition.groups
    members: dict[str, list[str]] = {name: [] for name in groups}
    for step in definition.steps:
        if step.group is None:
            continue
        group = groups.get(step.group)
        if group is None:
            found.append(Diagnostic(
                "TS112", f"step {step.name!r} names unknown group {step.group!r}; declare it "
                         f"with task.group({step.group!r}, order=...)"))
            continue
        members[group.name].append(step.name)
        if step.order != group.order:
            found.append(Diagnostic(
                "TS110", f"step {step.name!r} has order {step.order} but its group "
                         f"{group.name!r} has order {group.order}"))
    for name, names in members.items():
        group = groups[name]
        if not names:
            found.append(Diagnostic("TS111", f"group {name!r} has no member steps"))
        elif group.mode is AwaitMode.QUORUM and not 1 <= (group.quorum or 0) <= len(names):
            found.append(Diagnostic(
                "TS117", f"group {name!r} awaits a quorum of {group.quorum} but has "
                         f"{len(names)} members"))
    for stage in definition.stages():
        group_names = {s.group for s in stage.steps}
        if len(group_names) > 1:
            found.append(Diagnostic(
                "TS113", f"order {stage.order} is shared by steps of different groups or by a "
                         f"group and ungrouped steps ({sorted(s.name for s in stage.steps)}); "
                         "give each group its own order"))
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

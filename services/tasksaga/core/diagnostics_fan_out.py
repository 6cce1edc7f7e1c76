"""Checks of for_each steps (TS160-TS164, TS166, matrices TS205-TS209; docs/diagnostics.md)."""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel

from tasksaga.core.definition import Diagnostic, TaskDefinition
from tasksaga.core.fan_out_declaration import items_not_chosen
from tasksaga.core.fan_out_matrix import matrix_problems
from tasksaga.core.fan_out_shape import ForEach, parse_instance
from tasksaga.core.steps import AwaitMode, StepDef


def fan_out_steps(definition: TaskDefinition) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for step in definition.steps:
        if parse_instance(step.name) is not None:
            found.append(Diagnostic(
                "TS166", f"step {step.name!r} is named like an instance of a for_each step "
                         "(name[index]); rename it"))
        spec = step.for_each
        if spec is None:
            continue
        found += _parallelism(step, spec) + _quorum(step, spec)
        found += _items(step, spec) if spec.matrix is None else _matrix(step, spec)
        stage = definition.stage_of(step.name)
        if step.group is not None or len(stage.steps) > 1:
            found.append(Diagnostic(
                "TS164", f"for_each step {step.name!r} shares its order {step.order} with "
                         f"{sorted(s.name for s in stage.steps if s.name != step.name)}: its "
                         "instances are its parallel group; give it an order of its own"))
    return found


def _parallelism(step: StepDef, spec: ForEach) -> list[Diagnostic]:
    limit = spec.max_parallel
    if limit is None or (isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1):
        return []
    return [Diagnostic("TS160", f"for_each step {step.name!r} has max_parallel={limit!r}: give "
                                "an integer >= 1, or None for every instance at once")]


def _quorum(step: StepDef, spec: ForEach) -> list[Diagnostic]:
    quorum = spec.quorum
    if spec.mode is not AwaitMode.QUORUM:
        if quorum is None:
            return []
        return [Diagnostic("TS161", f"for_each step {step.name!r} has quorum={quorum!r} but "
                                    f"mode {spec.mode.name}: the quorum would be ignored; use "
                                    "mode=AwaitMode.QUORUM or drop quorum=")]
    if quorum is None:
        return [Diagnostic("TS161", f"for_each step {step.name!r} has mode QUORUM but no "
                                    "quorum=: give a count (3) or a fraction of the items (0.5)")]
    valid = ((isinstance(quorum, int) and not isinstance(quorum, bool) and quorum >= 1)
             or (isinstance(quorum, float) and 0.0 < quorum <= 1.0))
    if valid:
        return []
    return [Diagnostic("TS162", f"for_each step {step.name!r} has quorum={quorum!r}: give a "
                                "count >= 1 or a fraction 0 < q <= 1 of the items (a count "
                                "above the number of items fails the step when it expands)")]


def _matrix(step: StepDef, spec: ForEach) -> list[Diagnostic]:
    if spec.items is items_not_chosen:
        return [Diagnostic("TS209", f"for_each step {step.name!r} has both items= and matrix=: "
                                    "give one (a matrix is its items, one per cell)")]
    if callable(spec.matrix):  # from the request: checked when the step expands
        if _takes_one_argument(spec.matrix):
            return []
        return [Diagnostic("TS205", f"for_each step {step.name!r}: matrix= must be a mapping "
                                    "of axes or a function of one argument (the SagaContext) "
                                    "returning one")]
    return [Diagnostic(problem.code, f"for_each step {step.name!r}: {problem.message}")
            for problem in matrix_problems(spec.matrix)]


def _items(step: StepDef, spec: ForEach) -> list[Diagnostic]:
    found = []
    if spec.items is items_not_chosen:
        found.append(Diagnostic("TS209", f"for_each step {step.name!r} has neither items= nor "
                                         "matrix=: give one"))
    elif not callable(spec.items) or not _takes_one_argument(spec.items):
        found.append(Diagnostic(
            "TS163", f"for_each step {step.name!r}: items= must be a function of one "
                     "argument (the SagaContext) returning a list, got "
                     f"{spec.items_name}"))
    item_type = spec.item_type
    if item_type is not None and not (isinstance(item_type, type)
                                      and issubclass(item_type, BaseModel)):
        found.append(Diagnostic(
            "TS163", f"for_each step {step.name!r}: item= must be a pydantic model class, got "
                     f"{item_type!r}"))
    return found


def _takes_one_argument(function: Any) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in parameters if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) == 1

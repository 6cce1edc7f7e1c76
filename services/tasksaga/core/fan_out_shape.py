"""The declared shape of a dynamic fan-out (``task.for_each``), and how its instances are named.

A for_each step expands, when the saga reaches it, into one step instance per item that its
``items(ctx)`` function returns. Instance ``i`` of step ``TranscodeEach`` is the step named
``TranscodeEach[i]`` everywhere a step name is used: events, commands, timers, step records,
progress. Each instance has its own attempts, retries, timeouts, heartbeats and compensation;
the step itself completes (its data: the instances' data, as a list in item order) or fails
as its await mode says. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tasksaga.core.fan_out_names import instance_name, parse_instance
from tasksaga.core.steps import AwaitMode, StepDef

__all__ = ["MAX_ITEMS", "ForEach", "ItemsFunction", "instance_name", "instance_step", "parent_name",
           "parse_instance"]

#: At most this many instances per for_each step (items, or the cells of a matrix).
MAX_ITEMS = 10_000

#: ``items(ctx)``: the items to fan out over, a list of pydantic models or JSON-able values.
ItemsFunction = Callable[[Any], Any]


@dataclass(frozen=True)
class ForEach:
    items: ItemsFunction
    mode: AwaitMode = AwaitMode.ALL
    # QUORUM only: a count of successes (int >= 1) or a fraction of the items (0 < f <= 1).
    quorum: int | float | None = None
    # At most this many instances in flight (running or waiting for a retry); None: all.
    max_parallel: int | None = None
    # The model of each item, when the items are models (inferred from ``-> list[Model]``).
    item_type: type[BaseModel] | None = None
    # A matrix step's axes (a mapping, or a function of the SagaContext giving one): ``items``
    # is then its cells (tasksaga.core.fan_out_matrix).
    matrix: Any = None

    @property
    def items_name(self) -> str:
        return getattr(self.items, "__qualname__", repr(self.items))

    def required_successes(self, count: int) -> int:
        """How many of ``count`` instances must succeed for the step to complete."""
        if count == 0:
            return 0
        if self.mode is AwaitMode.ALL:
            return count
        if self.mode is AwaitMode.ANY:
            return 1
        quorum = self.quorum if self.quorum is not None else 1
        if isinstance(quorum, float):
            return max(1, math.ceil(quorum * count - 1e-9))
        return quorum


def instance_step(steps: dict[str, StepDef], name: str) -> StepDef | None:
    """The declaration instance ``name`` runs with: its for_each step's, under its own name
    (so every rule that dispatches, times out or compensates a step by name works on it)."""
    parsed = parse_instance(name)
    if parsed is None:
        return None
    parent = steps.get(parsed[0])
    if parent is None or parent.for_each is None:
        return None
    return dataclasses.replace(parent, name=name)


def parent_name(name: str, steps: dict[str, StepDef]) -> str:
    """The for_each step of an instance name; any other name as it is."""
    parsed = parse_instance(name)
    if parsed is not None and parsed[0] in steps and steps[parsed[0]].for_each is not None:
        return parsed[0]
    return name

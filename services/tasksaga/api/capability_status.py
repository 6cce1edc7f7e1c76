"""A task's status says which of its running steps wait for a worker with capabilities."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasksaga.core.capabilities import Route
from tasksaga.core.definition import TaskDefinition

#: The step statuses whose commands wait in a step-command topic for a worker.
_QUEUED = {"Running", "Compensating"}


def with_capability_waits(document: dict[str, Any], definition: TaskDefinition | None,
                          members: Callable[[Route], int | None] | None) -> dict[str, Any]:
    """Mark each queued step whose capability route has no worker connected with
    ``waiting_for_capabilities`` (the capabilities no connected worker offers)."""
    if definition is None or members is None:
        return document
    for step in document["steps"]:
        if step["status"] not in _QUEUED or not definition.has_step(step["step"]):
            continue
        declared = definition.get_step(step["step"])
        if declared.requires and members(definition.route_of(declared)) == 0:
            step["waiting_for_capabilities"] = sorted(declared.requires)
    return document

"""Replaying a workflow's history: the driver fed every recorded event, in order."""

from __future__ import annotations

from tasksaga.core import events as ev
from tasksaga.workflow.commands import recorded_command
from tasksaga.workflow.definition import WorkflowDefinition
from tasksaga.workflow.driver import Random, WorkflowDriver


def replay(definition: WorkflowDefinition, events: list[ev.TaskEvent], times: list[int],
           random: Random) -> WorkflowDriver:
    """A driver that has run the body through ``events`` (``times``: when each was
    written), checking every command against the history."""
    driver = WorkflowDriver(definition,
                            [r for r in map(recorded_command, events) if r is not None])
    for event, at_ms in zip(events, times, strict=True):
        driver.feed(event, at_ms, random)
    driver.finish_replay()
    return driver

"""Tasks whose definition version is not deployed: parking them, and moving them on. Pure.

A task is decided by the version it started with. When that version is not deployed, the
orchestrator does not fail the message (five failures would dead-letter it and strand the task):
it parks the task (``TaskVersionMissing``, once) and keeps each message for it
(``MessageParked``). The task resumes with ``TaskMigrated``: to its own version once that is
deployed again (automatically, on its next message, or by an operator's migrate), to another
compatible version (an operator's migrate), or to a compatible version that can compensate it
(an operator's cancel). The shell then decides the kept messages, in order, on the new version.
"""

from __future__ import annotations

from collections.abc import Iterable

from tasksaga.core import events as ev
from tasksaga.core.decision import Decision
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.fingerprint import fingerprint, migration_problem
from tasksaga.core.state import TaskState, TaskStatus, evolve


def _decision(state: TaskState, events: Iterable[ev.TaskEvent]) -> Decision:
    decision = Decision(state=state)
    for event in events:
        decision.events.append(event)
        decision.state = evolve(decision.state, event)
    return decision


def combine(first: Decision, second: Decision) -> Decision:
    """Two decisions taken one after the other on one stream, as one write."""
    return Decision(state=second.state, events=[*first.events, *second.events],
                    commands=[*first.commands, *second.commands],
                    timers=[*first.timers, *second.timers])


def park(state: TaskState, deployed: list[int], message_type: str, encoded_b64: str,
         now_ms: int) -> Decision:
    """Keep one message for a task whose version is not deployed; park the task first."""
    events: list[ev.TaskEvent] = []
    if state.status is not TaskStatus.VERSION_MISSING:
        events.append(ev.TaskVersionMissing(state.definition_version, deployed, now_ms))
    events.append(ev.MessageParked(message_type, encoded_b64, now_ms))
    return _decision(state, events)


def refuse(state: TaskState, to_version: int, reason: str, now_ms: int) -> Decision:
    return _decision(state, [ev.MigrationRefused(to_version, reason, now_ms)])


def migrate(state: TaskState, source: TaskDefinition | None, target: TaskDefinition,
            reason: str, now_ms: int) -> Decision:
    """Move a parked task to ``target``, or refuse with the reason (``MigrationRefused``)."""
    if state.status is not TaskStatus.VERSION_MISSING:
        return refuse(state, target.version, f"the task is {state.status}; only a task in "
                      "VersionMissing is moved to another version", now_ms)
    problem = migration_problem(state, source, target)
    if problem is not None:
        return refuse(state, target.version, f"version {state.definition_version} -> "
                      f"{target.version} is incompatible: {problem.reason}", now_ms)
    return _decision(state, [ev.TaskMigrated(state.definition_version, target.version,
                                             fingerprint(target), reason, now_ms)])


def version_to_compensate(state: TaskState, deployed: list[TaskDefinition]
                          ) -> TaskDefinition | None:
    """The newest deployed version a parked task can be cancelled (and compensated) on."""
    for candidate in sorted(deployed, key=lambda d: d.version, reverse=True):
        if migration_problem(state, None, candidate) is None:
            return candidate
    return None

"""The test kit's additions for code-first workflows (tasksaga.workflow).

``assert_replays`` replays a task's recorded history through a workflow body and fails with
the divergence (which await, what the history has, what the code issued) when the body no
longer takes the recorded path: the check a deployment needs before new code meets old
tasks. ``restart_orchestrator`` drops the orchestrator's cached states and live bodies, as a
``kill -9`` does, so the next message of every task replays it.
"""

from __future__ import annotations

import random

from tasksaga.testing.harness import SagaTestRun
from tasksaga.testing.report import TaskRun
from tasksaga.workflow.commands import Divergence, Recorded, recorded_command
from tasksaga.workflow.definition import WorkflowDefinition
from tasksaga.workflow.driver import WorkflowDriver
from tasksaga.workflow.replay import replay


class ReplayDiverged(AssertionError):
    """The body issued another command than the history records."""


def history_commands(task: TaskRun) -> list[Recorded]:
    """The commands a task's history records, in the order the body issued them."""
    return [r for r in map(recorded_command, task.events) if r is not None]


def replay_task(definition: WorkflowDefinition, task: TaskRun) -> WorkflowDriver:
    """Run ``definition``'s body through the task's history (no I/O: pure replay)."""
    envelopes = task.envelopes
    return replay(definition, [e.payload for e in envelopes],
                  [e.occurred_at_ms for e in envelopes], random.Random(0).random)


def assert_replays(definition: WorkflowDefinition, task: TaskRun) -> WorkflowDriver:
    driver = replay_task(definition, task)
    outcome = driver.outcome
    if isinstance(outcome, Divergence):
        raise ReplayDiverged(f"task {task.task_id} does not replay with "
                             f"{definition.name}: await #{outcome.index} ({outcome.location})"
                             f": the history records {outcome.expected}, the code issued "
                             f"{outcome.got}")
    return driver


def restart_orchestrator(run: SagaTestRun) -> None:
    run.orchestrator.forget_live_state()

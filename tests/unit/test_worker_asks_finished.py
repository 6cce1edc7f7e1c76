"""A worker asks the projections whether a command is answered only when the command is old
enough to have been answered elsewhere; a fresh one (the hot path) runs without the query."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_parallel import Lease
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.core import TaskDefinition
from tasksaga.core import messages as msg
from tasksaga.core.registry import TaskRegistry
from tasksaga.testing import InMemoryBus
from tasksaga.worker.cancellation import CancellationBook
from tasksaga.worker.finished_steps import ChainResume, worth_asking
from tasksaga.worker.runner import StepRunner

NOW_MS = 1_700_000_000_000


class Req(BaseModel):
    pass


task = TaskDefinition("Ask", queue="ask", request=Req)
runs: list[str] = []


@task.step("Only", order=1)
def only(ctx: Any) -> None:
    runs.append(ctx.task_id)


class AnsweredEverywhere:
    """Projections that show every command answered; counts the questions."""

    def __init__(self) -> None:
        self.asked = 0

    def why_finished(self, command: msg.ExecuteStep | msg.CompensateStep) -> str | None:
        self.asked += 1
        return "attempt 1 already has its result (Completed)"

    def resume_chain(self, command: msg.ExecuteStep) -> ChainResume:
        self.asked += 1
        return ChainResume(None, reason="every step of its chain has its result")


def _command(task_id: str, dispatched_at_ms: int) -> Envelope:
    command = msg.ExecuteStep(task_id, "Ask", "Only", 1, "ask", "{}", {}, f"{task_id}:Only:1",
                              10**13)
    return Envelope(payload=command, message_id=f"{task_id}:Only:1", task_id=task_id,
                    correlation_id=task_id, causation_id=None,
                    occurred_at_ms=dispatched_at_ms, task_type="Ask")


def _runner(finished: AnsweredEverywhere) -> StepRunner:
    return StepRunner(TaskRegistry([task]), None, InMemoryBus(), AvroCodec(), Topics("t"),
                      CancellationBook(), lambda: NOW_MS, finished=finished,
                      ask_finished_after_ms=1_000)


def test_only_commands_dispatched_at_least_the_threshold_ago_are_worth_asking() -> None:
    assert not worth_asking(NOW_MS - 999, NOW_MS, 1_000)
    assert worth_asking(NOW_MS - 1_000, NOW_MS, 1_000)
    assert worth_asking(NOW_MS + 5_000, NOW_MS, 0)  # 0: every command, whatever the clocks


def test_a_fresh_command_runs_unasked_and_an_old_one_answered_elsewhere_is_skipped() -> None:
    finished = AnsweredEverywhere()
    runner = _runner(finished)
    runs.clear()
    assert runner.handle(_command("fresh", NOW_MS - 20), Lease("t", 0, 0, inherited=False))
    assert finished.asked == 0 and runs == ["fresh"]
    assert runner.handle(_command("old", NOW_MS - 7_000), Lease("t", 0, 1, inherited=False))
    assert finished.asked == 1 and runs == ["fresh"] and runner.skipped == 1


def test_a_fresh_command_already_in_the_partition_when_the_worker_got_it_is_asked() -> None:
    """A worker killed between a step's result and its commit is restarted within a second:
    the commands it gets again are fresh, but another run of it answered them."""
    finished = AnsweredEverywhere()
    runner = _runner(finished)
    runs.clear()
    assert runner.handle(_command("again", NOW_MS - 300), Lease("t", 0, 0, inherited=True))
    assert finished.asked == 1 and runs == [] and runner.skipped == 1

"""Has the orchestrator already got this command's answer? Read from the projections.

After a restart, a rebalance, a consumer group reset or a republished topic, a worker is handed
commands whose step finished long ago. Running them again would repeat their side effects (a
success of a finished step becomes a surplus effect to compensate). The projections know better
than the worker's memory: they only ever move forward, so when they show an attempt's result,
the orchestrator has it. A projection that lags behind only lets a command run, as before.
"""

from __future__ import annotations

from typing import Protocol

from psycopg_pool import ConnectionPool

from tasksaga.core import messages as msg

# Not NeedsAttention: an operator's forward retry dispatches steps of such a task again, and a
# lagging projection must not make the worker drop them.
_ENDED = {"Completed", "Failed", "Cancelled", "CompensationFailed", "Resolved"}
# Statuses of a step record at attempt N meaning attempt N's result was recorded.
_ANSWERED = {"Completed", "Failed", "RetryScheduled", "Skipped", "Compensating",
             "CompensationRetryScheduled", "Compensated", "CompensationFailed"}


def worth_asking(dispatched_at_ms: int, now_ms: int, ask_after_ms: int) -> bool:
    """Whether to ask the projections about a command dispatched at ``dispatched_at_ms``.

    The caller asks anyway about a command that was in its partition before this worker
    got the partition (``Lease.inherited``: a previous owner, or this worker before a restart,
    may have run it). Of the others, only an old one can have been answered elsewhere: the
    relay re-sends what a crash left only after its sweep age, an operator re-drives old
    commands. A fresh command (the hot path, dispatched milliseconds ago) runs without the
    round trip. The clocks are two
    hosts': a skewed one only asks too often or too rarely, and too rarely costs what the
    check saves (a re-run), never an answer. ``ask_after_ms`` 0: ask of every command.
    """
    return ask_after_ms <= 0 or now_ms - dispatched_at_ms >= ask_after_ms


class FinishedSteps(Protocol):
    def why_finished(self, command: msg.ExecuteStep | msg.CompensateStep) -> str | None:
        """Why the command needs no run (its answer is known), or None."""
        ...


def why_finished(command: msg.ExecuteStep | msg.CompensateStep, task_status: str | None,
                 step_status: str | None, attempt: int, compensation_attempt: int
                 ) -> str | None:
    """The rule, on what the projections say of the command's task and step."""
    if task_status is None:
        return None  # not projected yet
    if isinstance(command, msg.ExecuteStep):
        if task_status in _ENDED:
            return f"its task already ended ({task_status})"
        if attempt > command.attempt:
            return f"the step is at attempt {attempt} already"
        if attempt == command.attempt and step_status in _ANSWERED:
            return f"attempt {attempt} already has its result ({step_status})"
        return None
    if command.surplus_attempt:
        return None  # surplus effects are not in the step record
    if step_status == "Compensated":
        return "the step is compensated already"
    if compensation_attempt > command.attempt:
        return f"its compensation is at attempt {compensation_attempt} already"
    if compensation_attempt == command.attempt and step_status in (
            "CompensationRetryScheduled", "CompensationFailed"):
        return f"compensation attempt {compensation_attempt} already has its result"
    return None


class ProjectedSteps:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def why_finished(self, command: msg.ExecuteStep | msg.CompensateStep) -> str | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT t.status, s.status, coalesce(s.attempt, 0),"
                " coalesce(s.compensation_attempt, 0) FROM task_status t"
                " LEFT JOIN step_records s ON s.task_id = t.task_id AND s.step = %s"
                " WHERE t.task_id = %s", (command.step, command.task_id)).fetchone()
        if row is None:
            return None
        return why_finished(command, row[0], row[1], int(row[2]), int(row[3]))

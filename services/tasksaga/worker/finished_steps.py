"""Has the orchestrator already got this command's answer? Read from the projections.

After a restart, a rebalance, a consumer group reset or a republished topic, a worker is handed
commands whose step finished long ago. Running them again would repeat their side effects (a
success of a finished step becomes a surplus effect to compensate). The projections know better
than the worker's memory: they only ever move forward, so when they show an attempt's result,
the orchestrator has it. A projection that lags behind only lets a command run, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from psycopg_pool import ConnectionPool

from tasksaga.adapters.payload_crypto import PayloadCipher, column_context
from tasksaga.core import messages as msg

# Not NeedsAttention: an operator's forward retry dispatches steps of such a task again, and a
# lagging projection must not make the worker drop them.
_ENDED = {"Completed", "Failed", "Cancelled", "CompensationFailed", "Resolved"}
# Statuses of a step record at attempt N meaning attempt N's result was recorded.
_ANSWERED = {"Completed", "Failed", "RetryScheduled", "Skipped", "Compensating",
             "CompensationRetryScheduled", "Compensated", "CompensationFailed"}
# Of those, the ones meaning that attempt succeeded (its data is the step's).
_SUCCEEDED = {"Completed", "Compensating", "CompensationRetryScheduled", "Compensated",
              "CompensationFailed"}


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


@dataclass(frozen=True)
class StepRecord:
    """What the projections say of one step."""

    status: str
    attempt: int
    compensation_attempt: int = 0
    data_json: str | None = None


@dataclass(frozen=True)
class ChainResume:
    """Where a chain's command resumes: ``start`` indexes ``[command.step, *command.then]``;
    ``data`` is what the steps before it returned. ``start`` None: nothing is left to run
    (``reason`` says why)."""

    start: int | None
    data: dict[str, str] = field(default_factory=dict)
    reason: str = ""


class FinishedSteps(Protocol):
    def why_finished(self, command: msg.ExecuteStep | msg.CompensateStep) -> str | None:
        """Why the command needs no run (its answer is known), or None."""
        ...

    def resume_chain(self, command: msg.ExecuteStep) -> ChainResume:
        """Where a command with a chain (``then``) resumes."""
        ...


def resume_chain(command: msg.ExecuteStep, task_status: str | None,
                 records: dict[str, StepRecord]) -> ChainResume:
    """The rule for a chain: skip the steps whose attempt already succeeded, then run the
    first one not answered yet (attempt 1 of a chain's step is the chain's: running it when
    the orchestrator has not recorded it yet is safe, tasksaga.core.chains); stop at a step
    that failed, or that the orchestrator dispatched again itself."""
    first = records.get(command.step)
    reason = why_finished(command, task_status, first.status if first else None,
                          first.attempt if first else 0,
                          first.compensation_attempt if first else 0)
    if reason is None:
        return ChainResume(0)
    if task_status in _ENDED:
        return ChainResume(None, reason=reason)
    data: dict[str, str] = {}
    for index, name in enumerate((command.step, *command.then)):
        record = records.get(name)
        if index and (record is None or record.attempt == 0
                      or (record.attempt == 1 and record.status not in _ANSWERED)):
            return ChainResume(index, data)
        wanted = command.attempt if index == 0 else 1
        if (record is None or record.attempt != wanted or record.status not in _SUCCEEDED
                or record.data_json is None):
            return ChainResume(None, reason=f"step {name} of its chain did not succeed at "
                                            f"attempt {wanted}, or moved on without it")
        data[name] = record.data_json
    return ChainResume(None, reason="every step of its chain has its result")


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
    def __init__(self, pool: ConnectionPool, cipher: PayloadCipher | None = None) -> None:
        self._pool = pool
        self._cipher = cipher or PayloadCipher(None)  # opens the sealed step data

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

    def resume_chain(self, command: msg.ExecuteStep) -> ChainResume:
        steps = [command.step, *command.then]
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT t.status, s.step, s.status, s.attempt, s.compensation_attempt,"
                " s.data_json FROM task_status t LEFT JOIN step_records s"
                " ON s.task_id = t.task_id AND s.step = ANY(%s) WHERE t.task_id = %s",
                (steps, command.task_id)).fetchall()
        records = {
            step: StepRecord(st, int(attempt), int(compensation), self._cipher.open_optional(
                data, column_context(command.task_id, "step_records.data_json", step)))
            for _, step, st, attempt, compensation, data in rows if step is not None}
        return resume_chain(command, rows[0][0] if rows else None, records)

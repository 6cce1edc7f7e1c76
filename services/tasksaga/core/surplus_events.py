"""Events of surplus effects: successes of attempts whose effect is not the step's recorded one
(``tasksaga.core.attempts``), each compensated on its own; part of the TaskEvent union of
``tasksaga.core.events``, which re-exports them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepSurplusSucceeded:
    """An attempt succeeded after another attempt's success was recorded as the step's (or
    after the task moved past the step): its effect is extra and is compensated on its own."""

    step: str
    attempt: int
    data_json: str
    will_compensate: bool  # False when the step has no compensation: recorded only
    succeeded_at_ms: int


@dataclass(frozen=True)
class StepSurplusCompensated:
    step: str
    attempt: int  # the surplus attempt whose effect was undone
    compensated_at_ms: int


@dataclass(frozen=True)
class StepSurplusCompensationFailed:
    step: str
    attempt: int  # the surplus attempt
    compensation_attempt: int
    error_type: str
    error_message: str
    will_retry: bool
    failed_at_ms: int
    trace_id: str | None = None

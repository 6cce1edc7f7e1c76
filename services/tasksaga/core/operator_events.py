"""Events an operator's repair writes to a task's stream (docs/operations.md, "Operator
repair"): part of the TaskEvent union of ``tasksaga.core.events``, which re-exports them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CompensationSkipped:
    """An operator skipped the compensation of a step that failed for good, with a reason:
    the step's effect stays, and the chain of compensations goes on past it."""

    step: str
    reason: str
    skipped_by: str
    skipped_at_ms: int


@dataclass(frozen=True)
class TaskResolved:
    """An operator marked a task that waited for one (CompensationFailed, NeedsAttention)
    resolved: terminal, with the operator's reason; nothing more runs."""

    reason: str
    resolved_by: str
    from_status: str
    resolved_at_ms: int


@dataclass(frozen=True)
class TaskRedriven:
    """An operator resent the commands of the task's steps in flight, each unchanged (same
    attempt, lease and idempotency key), so a copy the worker already has is harmless.
    ``commands`` names each one resent ("ExecuteStep Resize#2")."""

    commands: list[str]
    reason: str
    redriven_by: str
    redriven_at_ms: int

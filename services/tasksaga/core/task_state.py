"""State of one TaskInstance: the task, its steps, their surplus effects and received
signals, as ``tasksaga.core.state.evolve`` folds them from the task's events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from tasksaga.core.fan_out_names import parse_instance
from tasksaga.core.fan_out_state import FanOutState
from tasksaga.core.version_events import MessageParked


class TaskStatus(StrEnum):
    NEW = "New"
    RUNNING = "Running"
    COMPENSATING = "Compensating"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    COMPENSATION_FAILED = "CompensationFailed"
    # A step failed for good after the pivot: nothing was compensated, an operator decides.
    NEEDS_ATTENTION = "NeedsAttention"
    # The task's definition version is not deployed: parked, its messages kept, until an
    # operator migrates it (or the version is deployed again) or cancels it.
    VERSION_MISSING = "VersionMissing"
    # An operator ended a task that waited for one (CompensationFailed, NeedsAttention), with
    # a reason: what was left undone was repaired by hand.
    RESOLVED = "Resolved"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_compensating_or_after(self) -> bool:
        return self not in (TaskStatus.NEW, TaskStatus.RUNNING)


# Terminal for automation: nothing more happens unless an operator acts (CompensationFailed:
# retry the compensation; NeedsAttention: retry forward).
TERMINAL_STATUSES = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED,
     TaskStatus.COMPENSATION_FAILED, TaskStatus.NEEDS_ATTENTION, TaskStatus.RESOLVED}
)


class StepStatus(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    RETRY_SCHEDULED = "RetryScheduled"
    COMPLETED = "Completed"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    COMPENSATING = "Compensating"
    COMPENSATION_RETRY_SCHEDULED = "CompensationRetryScheduled"
    COMPENSATED = "Compensated"
    COMPENSATION_FAILED = "CompensationFailed"
    # A wait_for step waiting for its signal, or a sleep step for its time.
    WAITING = "Waiting"
    # An operator skipped its failed compensation: its effect stays, the chain went on.
    COMPENSATION_SKIPPED = "CompensationSkipped"


class SurplusStatus(StrEnum):
    COMPENSATING = "Compensating"
    COMPENSATED = "Compensated"
    COMPENSATION_FAILED = "CompensationFailed"
    UNCOMPENSATED = "Uncompensated"  # the step has no compensation: recorded only


@dataclass(frozen=True)
class SurplusEffect:
    """The success of an attempt whose effect is not the step's recorded one."""

    attempt: int
    data_json: str
    status: SurplusStatus
    compensation_attempt: int = 0


@dataclass(frozen=True)
class StepState:
    name: str
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    data_json: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    trace_id: str | None = None
    compensation_attempt: int = 0
    cancel_requested: bool = False
    fencing_token: int = 0  # the lease of the latest dispatch
    surplus: tuple[SurplusEffect, ...] = ()
    # The attempts spent before an operator's forward retry: the policy counts from here.
    retry_base: int = 0
    # While WAITING: when a sleep wakes, or when a wait_for times out (None: no timeout).
    waiting_until_ms: int | None = None
    # A child step: the task it started, and the status its run ended with (Completed, or
    # how it failed); its compensation's outcome is the step's own status.
    child_task_id: str | None = None
    child_status: str | None = None
    # The artifacts the completing attempt published (name -> ArtifactRef JSON).
    artifacts: tuple[tuple[str, str], ...] = ()
    # In the chain of an earlier step's first dispatch: attempt 1 of this step is the chain's
    # worker's to run (tasksaga.core.chains), never dispatched by the orchestrator.
    chain_reserved: bool = False

    def surplus_of(self, attempt: int) -> SurplusEffect | None:
        return next((s for s in self.surplus if s.attempt == attempt), None)


_PENDING = StepState(name="")


def _pending(name: str) -> StepState:
    """``StepState(name=name)``, copied from a blank one: the ``__init__`` of a frozen
    dataclass of 17 fields costs more than the rest of folding the event that needs it."""
    made = object.__new__(StepState)
    made.__dict__.update(_PENDING.__dict__)
    made.__dict__["name"] = name
    return made


@dataclass(frozen=True)
class ReceivedSignal:
    signal: str
    signal_id: str
    data_json: str
    consumed: bool = False  # it completed its wait_for step


@dataclass(frozen=True)
class TaskState:
    task_id: str = ""
    task_type: str = ""
    status: TaskStatus = TaskStatus.NEW
    version: int = 0
    request_json: str = "{}"
    callback_url: str | None = None
    submitted_at_ms: int = 0
    deadline_ms: int | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    completion_order: tuple[str, ...] = ()
    ending: str | None = None  # "failed" or "cancelled": the terminal state after compensation
    end_reason: str | None = None
    response_json: str | None = None
    tenant: str = "default"
    submitted_by: str | None = None
    signals: tuple[ReceivedSignal, ...] = ()
    definition_version: int = 1
    definition_fingerprint: str = ""
    # While VersionMissing: the status to go back to, and the messages kept for then.
    parked_from: TaskStatus | None = None
    parked_reason: str | None = None  # the end_reason to restore: parking shows its own
    parked: tuple[MessageParked, ...] = ()
    # Started by another task (its child step), or by depends_on (no step).
    parent_task_id: str | None = None
    parent_step: str | None = None
    # Expanded for_each steps by name; their instances are steps too (``step("Each[3]")``).
    fan_outs: Mapping[str, FanOutState] = field(default_factory=dict)

    def step(self, name: str) -> StepState:
        found = self.steps.get(name)
        if found is not None:
            return found
        located = self._instance(name) if self.fan_outs else None
        if located is not None:
            fan_out, index = located
            return fan_out.instances.get(index) or _pending(name)
        return _pending(name)

    def _instance(self, name: str) -> tuple[FanOutState, int] | None:
        parsed = parse_instance(name)
        fan_out = self.fan_outs.get(parsed[0]) if parsed else None
        if parsed is None or fan_out is None or parsed[1] >= fan_out.size:
            return None
        return fan_out, parsed[1]

    def steps_in(self, *statuses: StepStatus) -> list[StepState]:
        """Steps (fan-out instances included) in one of ``statuses``: O(steps + instances)."""
        found = [s for s in self.steps.values() if s.status in statuses]
        for fan_out in self.fan_outs.values():
            if fan_out.count(*statuses):
                found += [s for s in fan_out.instances if s is not None and s.status in statuses]
        return found

    def any_in(self, *statuses: StepStatus) -> bool:
        """Whether any step or instance is in one of ``statuses``: instances by their counts,
        so a 1,000-instance fan-out costs nothing here."""
        return (any(s.status in statuses for s in self.steps.values())
                or any(f.count(*statuses) for f in self.fan_outs.values()))

    def pending_signal(self, name: str) -> ReceivedSignal | None:
        """The signal received for wait_for step ``name`` that no step consumed yet."""
        return next((s for s in self.signals if s.signal == name and not s.consumed), None)

    def step_data(self) -> dict[str, str]:
        return {
            name: s.data_json
            for name, s in self.steps.items()
            if s.data_json is not None and name in self.completion_order
        }

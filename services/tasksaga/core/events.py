"""Events of the TaskInstance aggregate: the facts written to its append-only stream.

Each class maps one-to-one onto an Avro record of the same name in contracts/task_event.avsc.
Times are epoch milliseconds given by the caller's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tasksaga.core.composition_events import (
    ChildTaskEnded as ChildTaskEnded,
)
from tasksaga.core.composition_events import (
    ChildTaskStarted as ChildTaskStarted,
)
from tasksaga.core.composition_events import (
    FanOutCompleted as FanOutCompleted,
)
from tasksaga.core.composition_events import (
    FanOutExpanded as FanOutExpanded,
)
from tasksaga.core.composition_events import (
    FanOutRetried as FanOutRetried,
)
from tasksaga.core.composition_events import (
    WorkflowDiverged as WorkflowDiverged,
)
from tasksaga.core.composition_events import (
    WorkflowValueRecorded as WorkflowValueRecorded,
)
from tasksaga.core.operator_events import (
    CompensationSkipped as CompensationSkipped,
)
from tasksaga.core.operator_events import (
    TaskRedriven as TaskRedriven,
)
from tasksaga.core.operator_events import (
    TaskResolved as TaskResolved,
)
from tasksaga.core.surplus_events import (
    StepSurplusCompensated as StepSurplusCompensated,
)
from tasksaga.core.surplus_events import (
    StepSurplusCompensationFailed as StepSurplusCompensationFailed,
)
from tasksaga.core.surplus_events import (
    StepSurplusSucceeded as StepSurplusSucceeded,
)
from tasksaga.core.version_events import (
    MessageParked as MessageParked,
)
from tasksaga.core.version_events import (
    MigrationRefused as MigrationRefused,
)
from tasksaga.core.version_events import (
    TaskMigrated as TaskMigrated,
)
from tasksaga.core.version_events import (
    TaskVersionMissing as TaskVersionMissing,
)


@dataclass(frozen=True)
class TaskSubmitted:
    task_id: str
    task_type: str
    request_json: str
    callback_url: str | None
    idempotency_key: str | None
    submitted_at_ms: int
    deadline_ms: int | None
    tenant: str = "default"
    submitted_by: str | None = None
    # The definition the task started with: it decides the task to its end. Logs written
    # before versions fold as version 1 with an unknown ("") fingerprint.
    definition_version: int = 1
    definition_fingerprint: str = ""
    # Started by another task: its parent and child step (None: started by depends_on).
    parent_task_id: str | None = None
    parent_step: str | None = None


@dataclass(frozen=True)
class StepDispatched:
    step: str
    attempt: int
    queue: str
    dispatched_at_ms: int
    timeout_at_ms: int
    fencing_token: int = 0  # the lease given to this attempt (0: dispatched before tokens)
    # The steps after this one the worker runs itself, in order (attempt 1 of each is theirs).
    chain: list[str] = field(default_factory=list)
    # Started by the worker of a chain, right after this step completed (no command was sent).
    chained_after: str | None = None


@dataclass(frozen=True)
class StepCompleted:
    step: str
    attempt: int
    data_json: str
    completed_at_ms: int
    # The artifacts the completing attempt published: name -> ArtifactRef JSON.
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepFailed:
    """An attempt failed. ``will_retry`` says whether a retry follows."""

    step: str
    attempt: int
    error_type: str
    error_message: str
    will_retry: bool
    failed_at_ms: int
    trace_id: str | None = None


@dataclass(frozen=True)
class StepRetryScheduled:
    step: str
    next_attempt: int
    fire_at_ms: int


@dataclass(frozen=True)
class ConditionEvaluated:
    """The condition snapshot: why a step ran or was skipped."""

    step: str
    description: str
    function: str
    result: bool
    context_summary: str
    evaluated_at_ms: int


@dataclass(frozen=True)
class StepSkipped:
    step: str
    reason: str
    skipped_at_ms: int


@dataclass(frozen=True)
class StepCancellationRequested:
    """A running attempt was told to stop (task cancelled, or its group already satisfied)."""

    step: str
    attempt: int
    reason: str
    requested_at_ms: int


@dataclass(frozen=True)
class CancellationRequested:
    reason: str
    requested_at_ms: int


@dataclass(frozen=True)
class CompensationStarted:
    reason: str
    started_at_ms: int


@dataclass(frozen=True)
class StepCompensationDispatched:
    step: str
    attempt: int
    dispatched_at_ms: int


@dataclass(frozen=True)
class StepCompensated:
    step: str
    attempt: int
    compensated_at_ms: int


@dataclass(frozen=True)
class StepCompensationFailed:
    step: str
    attempt: int
    error_type: str
    error_message: str
    will_retry: bool
    failed_at_ms: int
    trace_id: str | None = None


@dataclass(frozen=True)
class StepCompensationRetryScheduled:
    step: str
    next_attempt: int
    fire_at_ms: int


@dataclass(frozen=True)
class TaskCompleted:
    response_json: str
    completed_at_ms: int


@dataclass(frozen=True)
class TaskFailed:
    """Ended after a failure, every completed step compensated."""

    reason: str
    failed_at_ms: int


@dataclass(frozen=True)
class TaskCancelled:
    """Ended after cancellation (or the task's timeout), every completed step compensated."""

    reason: str
    cancelled_at_ms: int


@dataclass(frozen=True)
class TaskCompensationFailed:
    """A compensation failed for good: needs an operator. Never dropped silently."""

    step: str
    error_type: str
    error_message: str
    failed_at_ms: int
    trace_id: str | None = None


@dataclass(frozen=True)
class CompensationRetryRequested:
    """An operator asked to retry the compensation that failed for good."""

    requested_at_ms: int


@dataclass(frozen=True)
class TaskNeedsAttention:
    """A step failed for good after the pivot (the point of no return) completed: nothing is
    compensated, the task waits for an operator. ``step`` is empty when the response builder
    failed."""

    step: str
    pivot: str
    error_type: str
    error_message: str
    failed_at_ms: int
    trace_id: str | None = None


@dataclass(frozen=True)
class CancellationRefused:
    """A cancellation (or the task's timeout) came after the pivot completed: the task goes on
    forward, nothing is compensated."""

    reason: str
    pivot: str
    refused_at_ms: int


@dataclass(frozen=True)
class ForwardRetryRequested:
    """An operator asked a task in NeedsAttention to retry its failed steps, each with a fresh
    retry budget."""

    requested_at_ms: int


@dataclass(frozen=True)
class StepWaiting:
    """A wait_for or sleep step was reached: the orchestrator itself completes it, when its
    signal arrives (``waiting_for`` "signal") or its durable timer fires ("time").
    ``until_ms``: when a sleep wakes, or when a wait_for times out (None: no timeout)."""

    step: str
    attempt: int
    waiting_for: str
    until_ms: int | None
    started_at_ms: int


@dataclass(frozen=True)
class SignalReceived:
    """A signal for a wait_for step, validated by the API. Received before the step is
    reached, it is kept and completes the step when reached."""

    step: str  # the wait_for step it is for: the signal's name
    signal_id: str
    data_json: str
    received_at_ms: int
    sent_by: str | None = None


TaskEvent = (
    TaskSubmitted
    | StepDispatched
    | StepCompleted
    | StepFailed
    | StepRetryScheduled
    | ConditionEvaluated
    | StepSkipped
    | StepCancellationRequested
    | CancellationRequested
    | CompensationStarted
    | StepCompensationDispatched
    | StepCompensated
    | StepCompensationFailed
    | StepCompensationRetryScheduled
    | TaskCompleted
    | TaskFailed
    | TaskCancelled
    | TaskCompensationFailed
    | CompensationRetryRequested
    | StepSurplusSucceeded
    | StepSurplusCompensated
    | StepSurplusCompensationFailed
    | TaskNeedsAttention
    | CancellationRefused
    | ForwardRetryRequested
    | StepWaiting
    | SignalReceived
    | TaskVersionMissing
    | MessageParked
    | TaskMigrated
    | MigrationRefused
    | CompensationSkipped
    | TaskResolved
    | TaskRedriven
    | ChildTaskStarted
    | ChildTaskEnded
    | FanOutExpanded
    | FanOutCompleted
    | FanOutRetried
    | WorkflowValueRecorded
    | WorkflowDiverged
)

EVENT_TYPES: tuple[type[TaskEvent], ...] = (
    TaskSubmitted,
    StepDispatched,
    StepCompleted,
    StepFailed,
    StepRetryScheduled,
    ConditionEvaluated,
    StepSkipped,
    CancellationRequested,
    CompensationStarted,
    StepCompensationDispatched,
    StepCompensated,
    StepCompensationFailed,
    StepCompensationRetryScheduled,
    TaskCompleted,
    TaskFailed,
    TaskCancelled,
    TaskCompensationFailed,
    # Added later: new union branches go at the end (docs/architecture.md, "Schema evolution").
    StepCancellationRequested,
    CompensationRetryRequested,
    StepSurplusSucceeded,
    StepSurplusCompensated,
    StepSurplusCompensationFailed,
    TaskNeedsAttention,
    CancellationRefused,
    ForwardRetryRequested,
    StepWaiting,
    SignalReceived,
    TaskVersionMissing,
    MessageParked,
    TaskMigrated,
    MigrationRefused,
    CompensationSkipped,
    TaskResolved,
    TaskRedriven,
    ChildTaskStarted,
    ChildTaskEnded,
    FanOutExpanded,
    FanOutCompleted,
    FanOutRetried,
    WorkflowValueRecorded,
    WorkflowDiverged,
)

"""Messages that reach the aggregate (commands, step results, timers) and commands it sends.

Each class maps one-to-one onto an Avro record of the same name in contracts/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# -- task commands (api -> orchestrator) ---------------------------------------------------------


@dataclass(frozen=True)
class ApiStepResult:
    """An API-placed step already done at submission (a file upload)."""

    step: str
    data_json: str
    # The artifacts it published (an upload step's ``produces=``): name -> ArtifactRef JSON.
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SubmitTask:
    task_id: str
    task_type: str
    request_json: str
    callback_url: str | None
    idempotency_key: str | None
    submitted_at_ms: int
    api_steps: list[ApiStepResult] = field(default_factory=list)
    # Who submitted it: every read and action on the task is scoped to this tenant.
    tenant: str = "default"
    submitted_by: str | None = None
    # The version the API validated the request and ran the API steps with (0: the
    # orchestrator's newest, as before versions).
    definition_version: int = 0
    # Started by another task (tasksaga.core.children): the parent and its child step, or,
    # with no step, the upstream task whose completion started it (depends_on).
    parent_task_id: str | None = None
    parent_step: str | None = None


@dataclass(frozen=True)
class CancelTask:
    task_id: str
    reason: str
    requested_at_ms: int


@dataclass(frozen=True)
class RetryCompensation:
    """Operator action on a task in CompensationFailed: try its compensation again."""

    task_id: str
    requested_at_ms: int


@dataclass(frozen=True)
class RetryForward:
    """Operator action on a task in NeedsAttention: dispatch its failed steps again, each with
    a fresh retry budget."""

    task_id: str
    requested_at_ms: int


@dataclass(frozen=True)
class SendSignal:
    """A signal for the wait_for step of the same name; ``data_json`` was validated against
    the step's data model. ``signal_id`` makes it idempotent: a repeated id records nothing."""

    task_id: str
    signal: str
    signal_id: str
    data_json: str
    sent_at_ms: int
    sent_by: str | None = None


@dataclass(frozen=True)
class MigrateTask:
    """Operator action on a task in VersionMissing: go on with ``to_version`` (compatible with
    what the task recorded; the same version once it is deployed again)."""

    task_id: str
    to_version: int
    requested_at_ms: int


@dataclass(frozen=True)
class SkipCompensation:
    """Operator action on a task in CompensationFailed: leave ``step``'s effect in place (the
    reason says why that is acceptable) and go on compensating the steps before it."""

    task_id: str
    step: str
    reason: str
    requested_by: str
    requested_at_ms: int


@dataclass(frozen=True)
class ResolveTask:
    """Operator action on a task in CompensationFailed or NeedsAttention: end it as Resolved
    (the operator repaired what was left by hand), with the reason."""

    task_id: str
    reason: str
    requested_by: str
    requested_at_ms: int


@dataclass(frozen=True)
class RedriveTask:
    """Operator action on a stuck Running or Compensating task: resend the commands of its
    steps in flight, unchanged."""

    task_id: str
    reason: str
    requested_by: str
    requested_at_ms: int


@dataclass(frozen=True)
class ChildTaskFinished:
    """A child task ended (its orchestrator tells the parent, ``task_id``): ``status`` is its
    terminal status, ``response_json`` its response when it completed."""

    task_id: str
    step: str
    child_task_id: str
    status: str
    response_json: str | None
    reason: str | None
    finished_at_ms: int


@dataclass(frozen=True)
class CompensateTask:
    """The parent compensates past its child step: the completed child ``task_id``
    compensates its own completed steps in reverse (a failed compensation: retried)."""

    task_id: str
    parent_task_id: str
    reason: str
    requested_at_ms: int


# -- step results (worker -> orchestrator) -------------------------------------------------------


@dataclass(frozen=True)
class StepSucceeded:
    task_id: str
    step: str
    attempt: int
    data_json: str
    # The fencing token of the dispatch this result answers (ExecuteStep.fencing_token); 0 from
    # workers that predate tokens.
    fencing_token: int = 0
    # The artifacts the handler published: name -> ArtifactRef JSON (tasksaga.core.artifacts).
    artifacts: dict[str, str] = field(default_factory=dict)
    # The next step of the command's chain, which the worker started right after this one
    # ("": none).
    started_next: str = ""


@dataclass(frozen=True)
class StepAttemptFailed:
    task_id: str
    step: str
    attempt: int
    error_type: str
    error_message: str
    retryable: bool
    trace_id: str | None = None
    fencing_token: int = 0
    # The error's classes, most specific first, so a policy naming a base class matches.
    error_lineage: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StepHeartbeat:
    """A running step is alive; progress (0..1) and a message are optional."""

    task_id: str
    step: str
    attempt: int
    progress: float | None
    message: str | None
    fencing_token: int = 0
    # The worker's report that it starts the attempt now: the step timeout counts from here.
    started: bool = False


@dataclass(frozen=True)
class CompensationSucceeded:
    task_id: str
    step: str
    attempt: int
    surplus_attempt: int = 0  # echoed from CompensateStep


@dataclass(frozen=True)
class CompensationAttemptFailed:
    task_id: str
    step: str
    attempt: int
    error_type: str
    error_message: str
    trace_id: str | None = None
    surplus_attempt: int = 0  # echoed from CompensateStep
    error_lineage: list[str] = field(default_factory=list)


# -- timers (orchestrator -> itself, durable in Postgres) ---------------------------------------


class TimerKind(StrEnum):
    STEP_RETRY = "step_retry"
    STEP_TIMEOUT = "step_timeout"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    COMPENSATION_RETRY = "compensation_retry"
    COMPENSATION_TIMEOUT = "compensation_timeout"
    TASK_TIMEOUT = "task_timeout"
    WAIT_TIMEOUT = "wait_timeout"  # a wait_for step's signal did not come in time
    SLEEP_WAKE = "sleep_wake"  # a sleep step's time has come


@dataclass(frozen=True)
class TimerFired:
    task_id: str
    kind: TimerKind
    step: str
    attempt: int


@dataclass(frozen=True)
class ScheduleTimer:
    """Asks the shell to deliver ``TimerFired`` at ``fire_at_ms`` (durably)."""

    fire_at_ms: int
    timer: TimerFired


# -- step commands (orchestrator -> worker) ------------------------------------------------------


@dataclass(frozen=True)
class ExecuteStep:
    task_id: str
    task_type: str
    step: str
    attempt: int
    queue: str
    request_json: str
    step_data: dict[str, str]
    idempotency_key: str
    timeout_at_ms: int
    # The lease of this dispatch: grows with every dispatch of the task (it is the stream
    # version of its StepDispatched), so a newer attempt always holds a larger token.
    fencing_token: int = 0
    # The definition version of the task: the worker runs that version's handler.
    definition_version: int = 1
    # An instance of a for_each step: its item (JSON) and index (ctx.item, ctx.item_index).
    item_json: str | None = None
    item_index: int | None = None
    # The references of the artifacts the step consumes (name -> ArtifactRef JSON).
    artifacts: dict[str, str] = field(default_factory=dict)
    # A chain (tasksaga.core.chains): the steps the worker runs next itself, in order, each at
    # attempt 1 under this command's lease, as long as the one before succeeds.
    then: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CompensateStep:
    task_id: str
    task_type: str
    step: str
    attempt: int
    queue: str
    request_json: str
    step_data: dict[str, str]
    idempotency_key: str
    # 0: undo the step's recorded effect. N > 0: undo the surplus effect of attempt N (an
    # attempt that also succeeded; its data is the step's entry in step_data).
    surplus_attempt: int = 0
    definition_version: int = 1
    # An instance of a for_each step: its item (JSON) and index, as in ExecuteStep.
    item_json: str | None = None
    item_index: int | None = None
    # The references of the artifacts the step itself published: compensating releases them.
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CancelStep:
    task_id: str
    step: str
    attempt: int
    queue: str
    reason: str


TaskCommand = (SubmitTask | CancelTask | RetryCompensation | RetryForward | SendSignal
               | MigrateTask | SkipCompensation | ResolveTask | RedriveTask
               | ChildTaskFinished | CompensateTask)
StepResult = (
    StepSucceeded | StepAttemptFailed | CompensationSucceeded | CompensationAttemptFailed
    | StepHeartbeat
)
Inbound = TaskCommand | StepResult | TimerFired
StepCommand = ExecuteStep | CompensateStep | CancelStep
#: What a decision sends: step commands, and the task commands one task sends another (a
#: child's start, cancellation and compensation; a child's end, to its parent).
TaskToTask = SubmitTask | CancelTask | CompensateTask | ChildTaskFinished
Outbound = StepCommand | TaskToTask

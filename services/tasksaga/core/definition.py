"""The task declaration API: a task is a name, a queue, typed request/response and ordered steps.

Example::

    zip_task = TaskDefinition("CreateZip", queue="zip", request=ZipRequest, response=ZipResponse)
    zip_task.upload_step("UploadFiles", order=1, bucket="zip-uploads", source="files")

    @zip_task.step("CreateArchive", order=2, produces=["archive"])
    def create_archive(ctx: StepContext[ZipRequest]) -> ArchiveData: ...

    @zip_task.compensation("CreateArchive")
    def notify_archive_removed(ctx: StepContext[ZipRequest], data: ArchiveData) -> None: ...

    @zip_task.response_builder
    def response(ctx: SagaContext[ZipRequest]) -> ZipResponse: ...

Declaring is pure: nothing here touches the network. Steps run stage by stage in ``order``;
the steps of one ``group`` (or, without a group, the steps sharing an order) run in parallel.
Retry policies, conditions and compensations can also be attached by step name, as in the
seed's attributes; names are checked when the definition is registered
(``tasksaga.core.diagnostics``), never at declaration, so every problem is reported at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tasksaga.core.annotations import returned_model
from tasksaga.core.authorization import Roles
from tasksaga.core.definition_errors import DefinitionError, Diagnostic
from tasksaga.core.definition_queries import DefinitionQueries
from tasksaga.core.fan_out_declaration import ForEachDeclaration
from tasksaga.core.request_fields import (
    CallbackUrl,
    UploadedFile,
    UploadStepData,
    outbound_urls,
)
from tasksaga.core.retry import RetryPolicy
from tasksaga.core.steps import (
    AwaitMode,
    ChildRequestBuilder,
    ChildTask,
    CompensationHandler,
    ConditionFunction,
    ConditionSummary,
    FileUpload,
    GroupDef,
    Placement,
    ResponseBuilder,
    SignalWait,
    Sleep,
    SleepUntil,
    Stage,
    StepCondition,
    StepDef,
    StepHandler,
)

# The step shapes and request field types moved to their own modules; definition modules and
# services that import them from here keep working.
__all__ = [
    "DEFAULT_START_TIMEOUT_SECONDS",
    "DEFAULT_STEP_TIMEOUT_SECONDS",
    "AwaitMode",
    "CallbackUrl",
    "CompensationHandler",
    "ConditionFunction",
    "ConditionSummary",
    "DefinitionError",
    "Diagnostic",
    "FileUpload",
    "GroupDef",
    "Placement",
    "ResponseBuilder",
    "Stage",
    "StepCondition",
    "StepDef",
    "StepHandler",
    "TaskDefinition",
    "UploadStepData",
    "UploadedFile",
    "outbound_urls",
]

DEFAULT_STEP_TIMEOUT_SECONDS = 300.0
# How long a dispatched step may wait in its queue for a worker to start it.
DEFAULT_START_TIMEOUT_SECONDS = 300.0


@dataclass
class _Attachment:
    kind: str  # "compensation", "retry", "compensation_retry", "condition"
    step: str
    value: Any


@dataclass
class _Declarations:
    steps: list[StepDef] = field(default_factory=list)
    groups: list[GroupDef] = field(default_factory=list)
    attachments: list[_Attachment] = field(default_factory=list)


class TaskDefinition(ForEachDeclaration, DefinitionQueries):
    def __init__(
        self,
        name: str,
        *,
        queue: str,
        request: type[BaseModel],
        response: type[BaseModel] | None = None,
        max_retries: int = 0,
        retry: RetryPolicy | None = None,
        timeout_seconds: float | None = None,
        cancellable: bool = True,
        step_timeout_seconds: float = DEFAULT_STEP_TIMEOUT_SECONDS,
        start_timeout_seconds: float = DEFAULT_START_TIMEOUT_SECONDS,
        roles: Roles | Mapping[str, Iterable[str] | None] | None = None,
        allow_extra_fields: bool = False,
        version: int = 1,
        depends_on: TaskDefinition | str | None = None,
    ) -> None:
        self.name = name
        # Starts, with the upstream's response as its request, whenever a task of that type
        # completes (docs/dsl.md, "Child tasks and depends_on").
        self.depends_on = depends_on.name if isinstance(depends_on, TaskDefinition) \
            else depends_on
        # A running task is decided by the version it started with (recorded in its
        # TaskSubmitted); a changed step graph needs a new version (tasksaga-check, TS140).
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version of task {name!r} must be an integer >= 1, got "
                             f"{version!r}")
        self.version = version
        self.queue = queue
        self.request_type = request
        self.response_type = response
        self.max_retries = max_retries
        self.default_retry = retry or RetryPolicy(max_retries=max_retries)
        # Both given: the policy wins and max_retries would be silently ignored (TS125).
        self.retry_conflict = retry is not None and max_retries != 0
        self.timeout_seconds = timeout_seconds
        self.cancellable = cancellable
        self.step_timeout_seconds = step_timeout_seconds
        # A step attempt's timeout counts from the moment a worker starts it (the worker says
        # so); before that, the attempt may wait this long in its queue. A backlog longer than
        # the step timeout must not time out (and retry, and lengthen) every queued step.
        if start_timeout_seconds <= 0:
            raise ValueError(f"start_timeout_seconds must be positive, got "
                             f"{start_timeout_seconds!r}: it bounds how long a step may wait "
                             "for a worker")
        self.start_timeout_seconds = start_timeout_seconds
        # Who may submit, read, cancel and operate this type (the seed's [RequiresRole]).
        self.roles = roles if isinstance(roles, Roles) else Roles.from_mapping(roles or {})
        # By default a request field the model does not declare is refused: a typo such as
        # "expres": true must not silently change behaviour.
        self.allow_extra_fields = allow_extra_fields
        self.build_response: ResponseBuilder | None = None
        self._declared = _Declarations()
        self._steps: dict[str, StepDef] = {}
        self._groups: dict[str, GroupDef] = {}

    # -- declaration -------------------------------------------------------------------------

    def step(
        self,
        name: str,
        *,
        order: int,
        queue: str | None = None,
        group: str | None = None,
        data: type[BaseModel] | None = None,
        retry: RetryPolicy | None = None,
        compensation_retry: RetryPolicy | None = None,
        timeout_seconds: float | None = None,
        heartbeat_timeout_seconds: float | None = None,
        condition: StepCondition | None = None,
        reads: Iterable[str] | None = None,
        pivot: bool = False,
        requires: Iterable[str] | str = (),
        produces: Iterable[str] = (),
        consumes: Iterable[str] = (),
    ) -> Callable[[StepHandler], StepHandler]:
        """Declare a worker step whose handler is the decorated function. ``reads`` names the
        earlier steps whose data it reads (``ctx.data``): only those travel with its commands.
        ``pivot=True`` makes it the point of no return (docs/dsl.md, "Pivot steps").
        ``requires`` names the capabilities its worker must have (docs/dsl.md, "Capabilities").
        ``produces``/``consumes`` name the artifacts it publishes and opens (docs/dsl.md,
        "Artifacts")."""

        def register(handler: StepHandler) -> StepHandler:
            self._add(
                StepDef(
                    name=name, order=order, queue=queue, group=group,
                    data_type=data or returned_model(handler), retry=retry,
                    compensation_retry=compensation_retry, timeout_seconds=timeout_seconds,
                    heartbeat_timeout_seconds=heartbeat_timeout_seconds,
                    condition=condition, handler=handler,
                    reads=None if reads is None else tuple(reads), pivot=pivot,
                    requires=frozenset([requires] if isinstance(requires, str) else requires),
                    produces=tuple(produces), consumes=tuple(consumes),
                )
            )
            return handler

        return register

    def api_step(
        self, name: str, *, order: int, data: type[BaseModel] | None = None
    ) -> Callable[[StepHandler], StepHandler]:
        """Declare a step the API runs at submission, before answering 202."""

        def register(handler: StepHandler) -> StepHandler:
            self._add(StepDef(name=name, order=order, placement=Placement.API,
                              data_type=data or returned_model(handler), handler=handler))
            return handler

        return register

    def upload_step(self, name: str, *, order: int, bucket: str, source: str,
                    produces: str | None = None) -> StepDef:
        """Declare an API-placed step that streams the request's file field ``source``.

        With ``produces``, each file is also published as an artifact: ``produces`` itself
        for a single-file field, ``produces[0]``, ``produces[1]``, ... (in upload order) for a
        list (docs/dsl.md, "Artifacts")."""
        if produces is not None and not isinstance(produces, str):
            raise DefinitionError(self.name, [Diagnostic(
                "TS192", f"upload step {name!r} declares produces={produces!r}: give one "
                         "artifact name (a string); a list field's files become "
                         "'<name>[0]', '<name>[1]', ...")])
        return self._add(
            StepDef(name=name, order=order, placement=Placement.API, data_type=UploadStepData,
                    upload=FileUpload(bucket=bucket, source=source),
                    produces=() if produces is None else (produces,))
        )

    def wait_for(
        self, name: str, *, order: int, data: type[BaseModel] | None = None,
        timeout_seconds: float | None = None, group: str | None = None,
        condition: StepCondition | None = None,
    ) -> StepDef:
        """A human step: wait for ``POST /tasks/{id}/signals/{name}`` with a body of model
        ``data`` (later steps read it with ``ctx.data``). After ``timeout_seconds`` without
        the signal the step fails: the task's failure path (docs/dsl.md, "Signals")."""
        return self._add(StepDef(
            name=name, order=order, placement=Placement.ORCHESTRATOR, group=group,
            data_type=data, condition=condition, signal=SignalWait(timeout_seconds)))

    def sleep(
        self, name: str, *, order: int, seconds: float | None = None,
        until: SleepUntil | None = None, group: str | None = None,
        condition: StepCondition | None = None,
    ) -> StepDef:
        """A durable sleep of ``seconds``, or until ``until(ctx)`` (epoch ms or an aware
        datetime); it survives restarts: its timer is in the event store."""
        return self._add(StepDef(
            name=name, order=order, placement=Placement.ORCHESTRATOR, group=group,
            condition=condition, sleep=Sleep(seconds, until)))

    def child_step(
        self, name: str, *, order: int, task: TaskDefinition | str,
        request: ChildRequestBuilder, group: str | None = None,
        condition: StepCondition | None = None,
    ) -> StepDef:
        """Start a task of type ``task`` with the request ``request(ctx)`` builds from this
        task's context, and wait for it: its response becomes this step's data; compensating
        this step compensates it; cancelling this task cancels it."""
        known = task if isinstance(task, TaskDefinition) else None
        child = ChildTask(task_type=known.name if known else str(task), build_request=request,
                          request_type=known.request_type if known else None,
                          response_type=known.response_type if known else None)
        return self._add(StepDef(
            name=name, order=order, placement=Placement.ORCHESTRATOR, group=group,
            data_type=child.response_type, condition=condition, child=child))

    def group(
        self, name: str, *, order: int, mode: AwaitMode = AwaitMode.ALL, quorum: int | None = None
    ) -> GroupDef:
        """Declare a parallel group; its members name it with ``group=``."""
        group = GroupDef(name=name, order=order, mode=mode, quorum=quorum)
        self._declared.groups.append(group)
        self._groups.setdefault(name, group)
        return group

    def compensation(
        self, step_name: str
    ) -> Callable[[CompensationHandler], CompensationHandler]:
        def register(handler: CompensationHandler) -> CompensationHandler:
            self._attach("compensation", step_name, handler)
            return handler

        return register

    def retry_policy(self, step_name: str, policy: RetryPolicy) -> None:
        self._attach("retry", step_name, policy)

    def compensation_retry_policy(self, step_name: str, policy: RetryPolicy) -> None:
        self._attach("compensation_retry", step_name, policy)

    def condition(
        self, step_name: str, description: str, function: ConditionFunction | None,
        summary: ConditionSummary | None = None,
    ) -> None:
        self._attach("condition", step_name, StepCondition(description, function, summary))

    def response_builder(self, builder: ResponseBuilder) -> ResponseBuilder:
        self.build_response = builder
        return builder

    def _add(self, step: StepDef) -> StepDef:
        self._declared.steps.append(step)
        if step.name not in self._steps:
            self._steps[step.name] = step
            for attachment in self._declared.attachments:  # attached before the step existed
                if attachment.step == step.name:
                    self._apply(attachment)
        return step

    def _attach(self, kind: str, step_name: str, value: Any) -> None:
        attachment = _Attachment(kind, step_name, value)
        self._declared.attachments.append(attachment)
        self._apply(attachment)

    def _apply(self, attachment: _Attachment) -> None:
        step = self._steps.get(attachment.step)
        if step is None:
            return  # applied when the step is declared, or reported (TS105/TS114/TS115)
        kind, value = attachment.kind, attachment.value
        if kind == "compensation":
            step.compensation = value
        elif kind == "retry":
            step.retry = value
        elif kind == "compensation_retry":
            step.compensation_retry = value
        elif kind == "condition":
            step.condition = value

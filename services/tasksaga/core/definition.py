"""The task declaration API: a task is a name, a queue, typed request/response and ordered steps.

Example::

    zip_task = TaskDefinition("CreateZip", queue="zip", request=ZipRequest, response=ZipResponse)
    zip_task.upload_step("UploadFiles", order=1, bucket="zip-uploads", source="files")

    @zip_task.step("CreateArchive", order=2)
    def create_archive(ctx: StepContext[ZipRequest]) -> ArchiveData: ...

    @zip_task.compensation("CreateArchive")
    def delete_archive(ctx: StepContext[ZipRequest], data: ArchiveData) -> None: ...

    @zip_task.response_builder
    def response(ctx: SagaContext[ZipRequest]) -> ZipResponse: ...

Declaring is pure: nothing here touches the network. Steps sharing an ``order`` form a parallel
group. Definitions are checked by ``tasksaga.core.diagnostics`` when registered.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from tasksaga.core.context import SagaContext, StepContext
from tasksaga.core.retry import RetryPolicy

StepHandler = Callable[[StepContext[Any]], BaseModel | None]
CompensationHandler = Callable[[StepContext[Any], Any], None]
ResponseBuilder = Callable[[SagaContext[Any]], BaseModel]
ConditionFunction = Callable[[SagaContext[Any]], bool]
ConditionSummary = Callable[[SagaContext[Any]], str]

DEFAULT_STEP_TIMEOUT_SECONDS = 300.0


class Placement(StrEnum):
    API = "api"
    WORKER = "worker"


class UploadedFile(BaseModel):
    """A file field of a request once the API has streamed it to object storage."""

    bucket: str
    key: str
    filename: str
    content_type: str = "application/octet-stream"
    size: int


class UploadStepData(BaseModel):
    """Data of a file-upload step: the objects it stored (workers see keys, never bytes)."""

    files: list[UploadedFile]


@dataclass(frozen=True)
class StepCondition:
    description: str
    function: ConditionFunction
    summary: ConditionSummary | None = None

    @property
    def function_name(self) -> str:
        return getattr(self.function, "__qualname__", repr(self.function))


@dataclass(frozen=True)
class FileUpload:
    bucket: str
    source: str


@dataclass
class StepDef:
    name: str
    order: int
    placement: Placement = Placement.WORKER
    queue: str | None = None
    data_type: type[BaseModel] | None = None
    retry: RetryPolicy | None = None
    compensation_retry: RetryPolicy | None = None
    timeout_seconds: float | None = None
    condition: StepCondition | None = None
    upload: FileUpload | None = None
    handler: StepHandler | None = None
    compensation: CompensationHandler | None = None

    @property
    def has_compensation(self) -> bool:
        # A file upload is undone by deleting what it stored, without user code.
        return self.compensation is not None or self.upload is not None


class TaskDefinition:
    def __init__(
        self,
        name: str,
        *,
        queue: str,
        request: type[BaseModel],
        response: type[BaseModel] | None = None,
        max_retries: int = 0,
        timeout_seconds: float | None = None,
        cancellable: bool = True,
        step_timeout_seconds: float = DEFAULT_STEP_TIMEOUT_SECONDS,
    ) -> None:
        self.name = name
        self.queue = queue
        self.request_type = request
        self.response_type = response
        self.max_retries = max_retries
        self.timeout_seconds = timeout_seconds
        self.cancellable = cancellable
        self.step_timeout_seconds = step_timeout_seconds
        self.build_response: ResponseBuilder | None = None
        self._steps: dict[str, StepDef] = {}
        self._declared: list[StepDef] = []

    # -- declaration -------------------------------------------------------------------------

    def step(
        self,
        name: str,
        *,
        order: int,
        queue: str | None = None,
        data: type[BaseModel] | None = None,
        retry: RetryPolicy | None = None,
        compensation_retry: RetryPolicy | None = None,
        timeout_seconds: float | None = None,
        condition: StepCondition | None = None,
    ) -> Callable[[StepHandler], StepHandler]:
        """Declare a worker step whose handler is the decorated function."""

        def register(handler: StepHandler) -> StepHandler:
            self._add(
                StepDef(
                    name=name,
                    order=order,
                    queue=queue,
                    data_type=data or _returned_model(handler),
                    retry=retry,
                    compensation_retry=compensation_retry,
                    timeout_seconds=timeout_seconds,
                    condition=condition,
                    handler=handler,
                )
            )
            return handler

        return register

    def upload_step(self, name: str, *, order: int, bucket: str, source: str) -> StepDef:
        """Declare an API-placed step that streams the request's file field ``source``."""
        return self._add(
            StepDef(
                name=name,
                order=order,
                placement=Placement.API,
                data_type=UploadStepData,
                upload=FileUpload(bucket=bucket, source=source),
            )
        )

    def compensation(
        self, step_name: str
    ) -> Callable[[CompensationHandler], CompensationHandler]:
        def register(handler: CompensationHandler) -> CompensationHandler:
            step = self._steps.get(step_name)
            if step is None:
                raise DefinitionError(
                    self.name,
                    [Diagnostic("TS105", f"compensation names unknown step {step_name!r}; "
                                f"declare the step first (known: {sorted(self._steps)})")],
                )
            step.compensation = handler
            return handler

        return register

    def response_builder(self, builder: ResponseBuilder) -> ResponseBuilder:
        self.build_response = builder
        return builder

    def _add(self, step: StepDef) -> StepDef:
        self._declared.append(step)
        self._steps.setdefault(step.name, step)
        return step

    # -- queries -----------------------------------------------------------------------------

    @property
    def declared_steps(self) -> list[StepDef]:
        """Every declaration, duplicates included (diagnostics report them)."""
        return list(self._declared)

    @property
    def steps(self) -> list[StepDef]:
        return sorted(self._steps.values(), key=lambda s: s.order)

    def get_step(self, name: str) -> StepDef:
        try:
            return self._steps[name]
        except KeyError:
            raise KeyError(f"task {self.name!r} has no step {name!r}") from None

    def has_step(self, name: str) -> bool:
        return name in self._steps

    def stages(self) -> list[list[StepDef]]:
        """Steps grouped by order: each stage runs after the previous one is done."""
        stages: dict[int, list[StepDef]] = {}
        for step in self.steps:
            stages.setdefault(step.order, []).append(step)
        return [stages[order] for order in sorted(stages)]

    def queue_of(self, step: StepDef) -> str:
        return step.queue or self.queue

    def retry_policy_of(self, step: StepDef) -> RetryPolicy:
        return step.retry or RetryPolicy(max_retries=self.max_retries)

    def compensation_retry_of(self, step: StepDef) -> RetryPolicy:
        return step.compensation_retry or RetryPolicy(max_retries=self.max_retries)

    def step_timeout_ms(self, step: StepDef) -> int:
        return int((step.timeout_seconds or self.step_timeout_seconds) * 1000)

    def step_for_data_type(self, data_type: type[BaseModel]) -> StepDef:
        matches = [s for s in self.steps if s.data_type is data_type]
        if len(matches) != 1:
            raise LookupError(
                f"task {self.name!r} has {len(matches)} steps with data type "
                f"{data_type.__name__}; use data_of(step_name, type) instead"
            )
        return matches[0]

    def upload_steps(self) -> list[StepDef]:
        return [s for s in self.steps if s.upload is not None]

    def queues(self) -> set[str]:
        return {self.queue_of(s) for s in self.steps if s.placement is Placement.WORKER}


def _returned_model(handler: Callable[..., Any]) -> type[BaseModel] | None:
    try:
        hints = typing.get_type_hints(handler)
    except Exception:  # unresolved forward references: the user can pass data= instead
        return None
    returned = hints.get("return")
    if isinstance(returned, type) and issubclass(returned, BaseModel):
        return returned
    return None


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.code} {self.severity}: {self.message}"


class DefinitionError(ValueError):
    def __init__(self, task_name: str, diagnostics: list[Diagnostic]) -> None:
        self.task_name = task_name
        self.diagnostics = diagnostics
        lines = "\n".join(f"  {d}" for d in diagnostics)
        super().__init__(f"task {task_name!r} is not a valid definition:\n{lines}")

"""``WorkflowContext``: everything a workflow body may do, and the only sources of time,
randomness and ids it may use (each recorded in the task's history)."""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from tasksaga.core.definition import TaskDefinition
from tasksaga.core.retry import RetryPolicy
from tasksaga.workflow.commands import Kind, dump_argument
from tasksaga.workflow.definition import WorkflowStep
from tasksaga.workflow.diagnostics import RESERVED_NAMES
from tasksaga.workflow.driver import WorkflowDriver
from tasksaga.workflow.errors import WorkflowCancelled, WorkflowError
from tasksaga.workflow.futures import AllOf, AnyOf, ChildRun, WorkflowFuture

ModelT = TypeVar("ModelT", bound=BaseModel)
ResultT = TypeVar("ResultT")


class WorkflowContext:
    def __init__(self, driver: WorkflowDriver, task_id: str) -> None:
        self._driver = driver
        self.task_id = task_id

    def step(self, handler: WorkflowStep[Any, ResultT], argument: BaseModel | None = None, *,
             retry: RetryPolicy | None = None) -> WorkflowFuture[ResultT]:
        """Run ``handler(ctx, argument)`` on a step worker; await its result (its model), or
        ``StepFailed`` once its retries are spent. The command is issued here, so futures
        created one after another run in parallel."""
        if not isinstance(handler, WorkflowStep):
            raise WorkflowError(f"wf.step takes a @step handler, got {handler!r}: decorate "
                                "the function with @tasksaga.workflow.step")
        if not self._driver.definition.knows(handler):
            self._driver.definition.workflow_step(handler.name)  # raises, naming the known
        return self._driver.issue(Kind.STEP, handler.name, step=handler,
                                  argument_json=dump_argument(argument), retry=retry)

    def sleep(self, duration: timedelta) -> WorkflowFuture[None]:
        """A durable timer: the task sleeps in the event store, across any restart."""
        if not isinstance(duration, timedelta):
            raise WorkflowError(f"wf.sleep takes a timedelta, got {duration!r}")
        return self._driver.issue(Kind.SLEEP, "sleep",
                                  duration_ms=round(duration.total_seconds() * 1000))

    def signal(self, name: str, model: type[ModelT] | None = None, *,
               timeout: timedelta | None = None) -> WorkflowFuture[Any]:
        """Wait for ``POST /tasks/{id}/signals/{name}`` (declared with ``signals=``); its body,
        validated by the API, as ``model``. ``SignalTimedOut`` when ``timeout`` passes."""
        declared = self._driver.definition.signal_types
        if name not in declared:
            raise WorkflowError(f"signal {name!r} is not declared: add it to "
                                f"@workflow(signals={{...}}); declared: {sorted(declared)}")
        if model is not None and declared[name] is not model:
            raise WorkflowError(f"signal {name!r} is declared with "
                                f"{getattr(declared[name], '__name__', None)}, awaited as "
                                f"{model.__name__}")
        future = self._driver.issue(
            Kind.SIGNAL, name,
            timeout_ms=None if timeout is None else round(timeout.total_seconds() * 1000))
        if future.name != name:
            raise WorkflowError(f"signal {name!r} is awaited a second time: each signal is "
                                "awaited once per workflow (declare another name)")
        return future

    def child(self, task: TaskDefinition | str, request: BaseModel, *,
              response: type[ModelT] | None = None) -> ChildRun[Any]:
        """Start a task of type ``task`` (a saga or a workflow, given by its definition or
        its name) with ``request``, and await its response: parsed into the definition's
        response model, else ``response``, else a dict. ``ChildFailed`` when it fails, is
        cancelled or is not deployed. Cancelling this workflow cancels it; a completed
        child is undone by ``await wf.compensate_child(run)``."""
        known = task if isinstance(task, TaskDefinition) else None
        name = known.name if known is not None else task
        if not isinstance(name, str) or not name:
            raise WorkflowError(f"wf.child takes a task definition or a task type name, got "
                                f"{task!r}")
        if known is not None and not isinstance(request, known.request_type):
            raise WorkflowError(f"wf.child({name!r}) takes a {known.request_type.__name__} "
                                f"request, got {type(request).__name__}")
        if not isinstance(request, BaseModel):
            raise WorkflowError(f"wf.child({name!r}) takes a pydantic model request, got "
                                f"{type(request).__name__}")
        definition = self._driver.definition
        if definition.has_step(name) or name in RESERVED_NAMES:
            raise WorkflowError(f"wf.child({name!r}): a child await is named after its task "
                                f"type, and {name!r} is already a @step, a signal or a "
                                "reserved name of this workflow; rename one")
        response_type = response or (known.response_type if known is not None else None)
        future = self._driver.issue(Kind.CHILD, name, argument_json=request.model_dump_json(),
                                    child_type=name, response_type=response_type)
        assert isinstance(future, ChildRun)
        return future

    def compensate_child(self, child: ChildRun[Any]) -> WorkflowFuture[None]:
        """Undo a child that completed: it compensates its own steps in reverse (a workflow
        child refuses: undo its effects in its body). Raises ``ChildCompensationFailed``
        when the child could not be undone (past its pivot, a compensation that failed)."""
        if not isinstance(child, ChildRun):
            raise WorkflowError(f"wf.compensate_child takes what wf.child returned, got "
                                f"{child!r}")
        return self._driver.compensate(child)

    def all(self, *awaitables: WorkflowFuture[Any] | Coroutine[Any, Any, Any]) -> AllOf:
        """Every result, in order; the first failure raises (WhenAll). An awaitable may be
        a call of an ``async def`` helper: it runs beside the others (a routine)."""
        return AllOf(self._futures(awaitables))

    def any(self, *awaitables: WorkflowFuture[Any] | Coroutine[Any, Any, Any]) -> AnyOf:
        """The first success (WhenAny); the others are told to stop. ``StepFailed`` of the
        first failure when every one failed."""
        return self._driver.any_of(self._futures(awaitables))

    def _futures(self, awaitables: tuple[Any, ...]) -> tuple[WorkflowFuture[Any], ...]:
        futures = []
        for awaitable in awaitables:
            if inspect.iscoroutine(awaitable):
                futures.append(self._driver.spawn(awaitable))
            elif isinstance(awaitable, WorkflowFuture):
                futures.append(awaitable)
            else:
                raise WorkflowError(f"wf.all and wf.any take workflow awaitables (wf.step, "
                                    f"wf.sleep, wf.signal, wf.child, wf.all, wf.any) or calls "
                                    f"of async helpers, got {awaitable!r}")
        return tuple(futures)

    def now(self) -> datetime:
        """The time, as recorded in the history (UTC)."""
        ms = json.loads(self._driver.record("now", "now", lambda: str(self._driver.now())))
        return datetime.fromtimestamp(ms / 1000, tz=UTC)

    def random(self) -> float:
        """A random fraction in [0, 1), recorded."""
        value = self._driver.record("random", "random", lambda: repr(self._driver.random()))
        return float(json.loads(value))

    def uuid(self) -> uuid.UUID:
        """A random UUID (version 4), recorded."""

        def fresh() -> str:
            bits = 0
            for _ in range(4):  # 32 bits from each fraction: a float holds 53, not 64
                bits = bits << 32 | int(self._driver.random() * 2**32)
            return json.dumps(str(uuid.UUID(int=bits, version=4)))

        return uuid.UUID(json.loads(self._driver.record("uuid", "uuid", fresh)))

    def patched(self, patch_id: str) -> bool:
        """``if wf.patched("charge-v2"):`` new code; tasks started before it take the old
        path (their history has no marker), new ones record the marker and take the new."""
        return self._driver.patched(patch_id)

    @contextmanager
    def shield(self) -> Iterator[None]:
        """A block a cancellation does not interrupt (compensation): one that comes inside
        is raised when the block ends."""
        self._driver.shield_enter()
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            reason = self._driver.shield_exit()
            if reason is not None and not failed:
                raise WorkflowCancelled(reason)

    @property
    def cancelled(self) -> bool:
        """Whether the task's cancellation was delivered to the body."""
        return self._driver.cancelled is not None


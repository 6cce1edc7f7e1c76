"""Declaring a code-first workflow: ``@step`` handlers and the ``@workflow`` async function.

Example::

    @step(queue="orders")
    def reserve_stock(ctx: StepContext[Order], order: Order) -> Stock: ...

    @workflow("PlaceOrder", queue="orders", request=Order, response=Receipt,
              signals={"approve": Approval})
    async def place_order(wf: WorkflowContext, order: Order) -> Receipt:
        stock = await wf.step(reserve_stock, order)
        ...

A ``WorkflowDefinition`` is a ``TaskDefinition``: the registry, the API (submission, status,
audit, signals, authorization), the step workers and the test kit treat it like a saga. Its
steps are the ``@step`` handlers its body can call (found in the body's module, plus
``steps=``), each a worker step whose handler gets the argument the body passed; its signals
are wait_for steps the API validates bodies against. Only the orchestrator differs: it runs
the body (``tasksaga.workflow.decide``) instead of the saga rules.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, overload

from pydantic import BaseModel

from tasksaga.core.authorization import Roles
from tasksaga.core.context import SagaContext, StepContext
from tasksaga.core.definition import Diagnostic, TaskDefinition
from tasksaga.core.retry import RetryPolicy
from tasksaga.core.steps import Placement, SignalWait, StepDef
from tasksaga.workflow.errors import WorkflowError

WorkflowBody = Callable[[Any, Any], Coroutine[Any, Any, Any]]
ArgT = TypeVar("ArgT")
ResultT = TypeVar("ResultT")
_SUFFIX = "#"  # the n-th call of a step: name#n (n >= 2)


@dataclass(frozen=True)
class WorkflowStep(Generic[ArgT, ResultT]):
    """A function a workflow runs on a step worker: ``fn(ctx, argument) -> model | None``."""

    name: str
    fn: Callable[[StepContext[Any], ArgT], ResultT]
    queue: str | None = None
    retry: RetryPolicy | None = None
    timeout_seconds: float | None = None
    heartbeat_timeout_seconds: float | None = None
    argument_type: type[BaseModel] | None = None
    result_type: type[BaseModel] | None = None

    def __call__(self, ctx: StepContext[Any], argument: ArgT) -> ResultT:
        return self.fn(ctx, argument)

    def parse_result(self, data_json: str) -> Any:
        if self.result_type is None:
            return None
        return self.result_type.model_validate_json(data_json)

    def step_def(self, order: int) -> StepDef:
        return StepDef(name=self.name, order=order, queue=self.queue, data_type=self.result_type,
                       retry=self.retry, timeout_seconds=self.timeout_seconds,
                       heartbeat_timeout_seconds=self.heartbeat_timeout_seconds,
                       handler=self._run_on_worker)

    def _run_on_worker(self, ctx: StepContext[Any]) -> BaseModel | None:
        """The worker's entry: the argument travels as the step's own entry of its data."""
        raw = ctx.step_data_json.get(ctx.step, "null")
        argument: Any = None
        if self.argument_type is not None:
            argument = self.argument_type.model_validate_json(raw)
        result = self.fn(ctx, argument)
        if result is not None and not isinstance(result, BaseModel):
            raise TypeError(f"step {self.name} returned {type(result).__name__}: a step "
                            "returns a pydantic model or None")
        return result


class _StepDecorator(Protocol):
    def __call__(self, fn: Callable[[StepContext[Any], ArgT], ResultT], /,
                 ) -> WorkflowStep[ArgT, ResultT]: ...


@overload
def step(fn: Callable[[StepContext[Any], ArgT], ResultT], /) -> WorkflowStep[ArgT, ResultT]: ...


@overload
def step(
    fn: None = None, *, name: str | None = None, queue: str | None = None,
    retry: RetryPolicy | None = None, timeout_seconds: float | None = None,
    heartbeat_timeout_seconds: float | None = None,
) -> _StepDecorator: ...


def step(
    fn: Callable[..., Any] | None = None, *, name: str | None = None,
    queue: str | None = None, retry: RetryPolicy | None = None,
    timeout_seconds: float | None = None, heartbeat_timeout_seconds: float | None = None,
) -> Any:
    """Make ``fn(ctx, argument)`` a step a workflow can ``await wf.step(fn, argument)``."""

    def make(function: Callable[..., Any]) -> WorkflowStep[Any, Any]:
        argument_type, result_type = _models_of(function)
        return WorkflowStep(name=name or function.__name__, fn=function, queue=queue,
                            retry=retry, timeout_seconds=timeout_seconds,
                            heartbeat_timeout_seconds=heartbeat_timeout_seconds,
                            argument_type=argument_type, result_type=result_type)

    return make if fn is None else make(fn)


def base_name(name: str) -> str:
    """``charge#3`` -> ``charge``: the step (or signal) a history name stands for."""
    head, sep, tail = name.rpartition(_SUFFIX)
    return head if sep and tail.isdigit() else name


def nth_name(base: str, n: int) -> str:
    return base if n == 1 else f"{base}{_SUFFIX}{n}"


def awaits_in_order(completion_ranks: Mapping[str, int | None]) -> list[str]:
    """A workflow's recorded steps for its status: the completed ones in the order they
    completed, then the others (running, waiting, failed) by name, ``work#2`` before
    ``work#10``. A workflow declares no step list: only what its body issued is shown."""

    def key(name: str) -> tuple[bool, int, str, int]:
        rank = completion_ranks[name]
        base = base_name(name)
        n = 1 if base == name else int(name.rpartition(_SUFFIX)[2])
        return rank is None, rank or 0, base, n

    return sorted(completion_ranks, key=key)


class WorkflowDefinition(TaskDefinition):
    def __init__(
        self, name: str, body: WorkflowBody, *, queue: str, request: type[BaseModel],
        response: type[BaseModel] | None = None,
        signals: Mapping[str, type[BaseModel] | None] | None = None,
        steps: Iterable[WorkflowStep[Any, Any]] = (), retry: RetryPolicy | None = None,
        timeout_seconds: float | None = None, cancellable: bool = True,
        step_timeout_seconds: float = 300.0, roles: Roles | Mapping[str, Iterable[str] | None]
        | None = None, version: int = 1,
    ) -> None:
        super().__init__(name, queue=queue, request=request, response=response, retry=retry,
                         timeout_seconds=timeout_seconds, cancellable=cancellable,
                         step_timeout_seconds=step_timeout_seconds, roles=roles,
                         version=version)
        self.body = body
        self.signal_types: dict[str, type[BaseModel] | None] = dict(signals or {})
        self._explicit = tuple(steps)
        self._workflow_steps: dict[str, WorkflowStep[Any, Any]] = {}
        self._discovered = False
        # The body builds the response; the saga rules' builder is never called for a
        # workflow (the registry's TS108 check sees one).
        self.build_response = _built_by_the_body

    # -- the steps the body can call ---------------------------------------------------------

    def _discover(self) -> None:
        """The ``@step`` handlers of the body's module (looked up late, so handlers defined
        after the body count) and those given with ``steps=``."""
        if self._discovered:
            return
        self._discovered = True
        found = [v for v in vars(_module_of(self.body)).values() if isinstance(v, WorkflowStep)]
        for handler in [*found, *self._explicit]:
            self._workflow_steps.setdefault(handler.name, handler)
        order = 0
        for order, handler in enumerate(self._workflow_steps.values(), start=1):
            self._add(handler.step_def(order))
        for offset, (signal, model) in enumerate(self.signal_types.items(), start=1):
            self._add(StepDef(name=signal, order=order + offset,
                              placement=Placement.ORCHESTRATOR, data_type=model,
                              signal=SignalWait()))

    def workflow_step(self, name: str) -> WorkflowStep[Any, Any]:
        self._discover()
        handler = self._workflow_steps.get(base_name(name))
        if handler is None:
            known = sorted(self._workflow_steps)
            raise WorkflowError(f"workflow {self.name!r} has no step {base_name(name)!r}; its "
                                f"@step handlers are {known} (define it with @step in the "
                                "workflow's module, or pass it in steps=)")
        return handler

    def knows(self, handler: WorkflowStep[Any, Any]) -> bool:
        self._discover()
        return self._workflow_steps.get(handler.name) is handler

    # -- TaskDefinition queries, on dynamic names ---------------------------------------------

    @property
    def declared_steps(self) -> list[StepDef]:
        self._discover()
        return super().declared_steps

    @property
    def steps(self) -> list[StepDef]:
        self._discover()
        return super().steps

    def get_step(self, name: str) -> StepDef:
        self._discover()
        return super().get_step(base_name(name))

    def has_step(self, name: str) -> bool:
        self._discover()
        return super().has_step(base_name(name))

    def own_diagnostics(self, saga_checks: list[Diagnostic]) -> list[Diagnostic]:
        """The saga checks that apply (not TS102: a body may only sleep and wait for signals;
        not TS122: a workflow step gets its data as an argument, never by ctx.data(type)),
        then TS180-TS189 (core/diagnostics.py calls it for the registry and tasksaga-check)."""
        from tasksaga.workflow.diagnostics import diagnose_workflow

        kept = [d for d in saga_checks if d.code not in ("TS102", "TS122")]
        return kept + diagnose_workflow(self)

    def started_child_types(self) -> list[tuple[str, str]]:
        """(where, task type) of the children the body's source starts (``wf.child``): the
        registry and ``tasksaga-check`` check them against the deployed types."""
        from tasksaga.workflow.diagnostics import started_children

        body = getattr(self.body, "__qualname__", self.name)
        return [(f"wf.child in {body} line {line}", task_type)
                for line, task_type in started_children(self)]

    def queues(self) -> set[str]:
        self._discover()
        return {self.queue_of(s) for s in self.steps if s.placement is Placement.WORKER}


def workflow(
    name: str, *, queue: str, request: type[BaseModel], response: type[BaseModel] | None = None,
    signals: Mapping[str, type[BaseModel] | None] | None = None,
    steps: Iterable[WorkflowStep[Any, Any]] = (), retry: RetryPolicy | None = None,
    timeout_seconds: float | None = None, cancellable: bool = True,
    step_timeout_seconds: float = 300.0,
    roles: Roles | Mapping[str, Iterable[str] | None] | None = None, version: int = 1,
) -> Callable[[WorkflowBody], WorkflowDefinition]:
    """Declare ``async def body(wf, request) -> response`` as the task type ``name``."""

    def register(body: WorkflowBody) -> WorkflowDefinition:
        return WorkflowDefinition(name, body, queue=queue, request=request, response=response,
                                  signals=signals, steps=steps, retry=retry,
                                  timeout_seconds=timeout_seconds, cancellable=cancellable,
                                  step_timeout_seconds=step_timeout_seconds, roles=roles,
                                  version=version)

    return register


def _built_by_the_body(ctx: SagaContext[Any]) -> BaseModel:
    raise WorkflowError("a workflow's response is what its body returns")


def _module_of(body: WorkflowBody) -> Any:
    module = inspect.getmodule(body)
    return module if module is not None else type("NoModule", (), {})


def _models_of(fn: Callable[..., Any]) -> tuple[type[BaseModel] | None, type[BaseModel] | None]:
    """The model of the handler's second parameter (its argument) and of its result."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolved forward references: untyped, parsed as None
        hints = {}
    parameters = list(inspect.signature(fn).parameters)
    argument = hints.get(parameters[1]) if len(parameters) > 1 else None
    result = hints.get("return")

    def model(value: Any) -> type[BaseModel] | None:
        return value if isinstance(value, type) and issubclass(value, BaseModel) else None

    return model(argument), model(result)

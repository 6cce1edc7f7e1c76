"""Failure injection for a test run: make a step fail N times, for good, or hang (its result
never arrives, so its timeout fires), and make a compensation fail.

The plan wraps the handlers of a copy of the definition that only the in-process worker sees:
the orchestrator decides with the user's own definition, and the injected errors travel the
real path (the worker catches them and reports the attempt failed, with the error's class).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasksaga.core.context import StepContext
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.errors import NonRetryableError

AttemptKey = tuple[str, str, int]  # task id, step, attempt


class InjectedFailure(Exception):
    """The error an injected failure raises unless the test gives its own."""


class _Hung(Exception):
    """Raised in place of a hung handler: the harness drops the failure it turns into, so the
    attempt never answers, as a worker stuck in a call would not."""


@dataclass
class _Rule:
    kind: str  # "fail", "hang" or "call"
    times: int | None  # the first ``times`` runs of the step in each task; None: every run
    error: Callable[[], BaseException] | None = None
    callback: Callable[[StepContext[Any]], None] | None = None


class FaultPlan:
    def __init__(self) -> None:
        self._forward: dict[str, list[_Rule]] = {}
        self._backward: dict[str, list[_Rule]] = {}
        self._runs: dict[tuple[str, str, str], int] = {}  # (direction, task, step) -> runs
        self.hung: set[AttemptKey] = set()

    def fail(self, step: str, times: int | None = 1, error: BaseException | None = None,
             retryable: bool = True) -> None:
        """The step's first ``times`` runs in each task raise ``error`` (None: every run).
        ``retryable=False`` raises a NonRetryableError: the step fails without retrying."""
        self._forward.setdefault(step, []).append(
            _Rule("fail", _count(times), _error_maker(step, error, retryable)))

    def hang(self, step: str, times: int | None = 1) -> None:
        """The step's first ``times`` runs never answer: only its timeout moves the task on."""
        self._forward.setdefault(step, []).append(_Rule("hang", _count(times)))

    def fail_compensation(self, step: str, times: int | None = 1,
                          error: BaseException | None = None) -> None:
        """The step's compensation raises on its first ``times`` runs (None: every run)."""
        self._backward.setdefault(step, []).append(
            _Rule("fail", _count(times), _error_maker(step, error, True)))

    def during(self, step: str, callback: Callable[[StepContext[Any]], None]) -> None:
        """Call ``callback(ctx)`` inside every run of the step, before its handler: to cancel
        the task while the step runs, or to look at the step's context."""
        self._forward.setdefault(step, []).append(_Rule("call", None, callback=callback))

    def steps(self) -> list[str]:
        """The steps this plan injects something into."""
        return sorted(set(self._forward) | set(self._backward))

    def wrap(self, definition: TaskDefinition) -> TaskDefinition:
        """A copy of ``definition`` whose handlers consult this plan on every run."""
        clone = copy.copy(definition)
        steps = {}
        for step in definition.steps:
            changes: dict[str, Any] = {}
            if step.handler is not None:
                changes["handler"] = self._forward_wrapper(step.name, step.handler)
            if step.compensation is not None:
                changes["compensation"] = self._backward_wrapper(step.name, step.compensation)
            elif step.produces:
                # A producer is compensated without user code (the worker releases its
                # artifacts after the handler): an injected failure still fails it first.
                changes["compensation"] = self._backward_wrapper(step.name, _no_handler)
            steps[step.name] = dataclasses.replace(step, **changes)
        # The copy's own step table (the definition has no public way to swap a handler):
        # the user's definition, which the orchestrator decides with, is left as it is.
        clone._steps = steps
        return clone

    def _forward_wrapper(self, name: str, handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        @functools.wraps(handler)
        def run(ctx: StepContext[Any]) -> Any:
            count = self._count_run("forward", ctx.task_id, name)
            for rule in self._forward.get(name, ()):
                if rule.times is not None and count > rule.times:
                    continue
                if rule.kind == "call":
                    assert rule.callback is not None
                    rule.callback(ctx)
                elif rule.kind == "hang":
                    self.hung.add((ctx.task_id, name, ctx.attempt))
                    raise _Hung(f"{name} attempt {ctx.attempt} hangs (injected)")
                else:
                    assert rule.error is not None
                    raise rule.error()
            return handler(ctx)
        return run

    def _backward_wrapper(self, name: str,
                          compensation: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        @functools.wraps(compensation)
        def run(ctx: StepContext[Any], data: Any) -> None:
            count = self._count_run("backward", ctx.task_id, name)
            for rule in self._backward.get(name, ()):
                if rule.times is None or count <= rule.times:
                    assert rule.error is not None
                    raise rule.error()
            compensation(ctx, data)
        return run

    def _count_run(self, direction: str, task_id: str, step: str) -> int:
        key = (direction, task_id, step)
        self._runs[key] = self._runs.get(key, 0) + 1
        return self._runs[key]


def _no_handler(ctx: StepContext[Any], data: Any) -> None:
    """The handler of a producer that has none: the worker's release follows it."""


def _count(times: int | None) -> int | None:
    if times is not None and times < 1:
        raise ValueError(f"times must be at least 1 (or None for every run), got {times}")
    return times


def _error_maker(step: str, error: BaseException | None,
                 retryable: bool) -> Callable[[], BaseException]:
    if error is not None:
        return lambda: copy.copy(error)  # a fresh exception per run: no shared traceback
    if retryable:
        return lambda: InjectedFailure(f"{step} failed (injected)")
    return lambda: NonRetryableError(f"{step} failed for good (injected)")

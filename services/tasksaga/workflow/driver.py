"""The workflow driver: runs a workflow body against its history, pure like ``decide``.

Events go in (``feed``), commands come out (``take_new``). The body is a coroutine driven by
hand: each ``await`` of an unresolved ``WorkflowFuture`` yields it here, and the driver
resumes the body (``send``, or ``throw`` for a failure or a cancellation) when a history event
resolves it. Replaying a history is feeding its events in order: every command the body
issues is checked against the command the history records at the same position, so a body
that no longer issues what it issued before is caught (``Diverged``) instead of silently
going another way. Time, randomness and ids come from the caller (``now_ms``, ``random``),
and the values the body reads are recorded, so a replay reads them back.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from tasksaga.core import events as ev
from tasksaga.core.children import child_task_id
from tasksaga.workflow.command_tape import CommandTape
from tasksaga.workflow.commands import (
    Command,
    Divergence,
    Failed,
    Kind,
    Outcome,
    Recorded,
    completed_outcome,
    failed_outcome,
    parse_result,
)
from tasksaga.workflow.definition import WorkflowDefinition, nth_name
from tasksaga.workflow.errors import (
    ChildCompensationFailed,
    ChildFailed,
    Diverged,
    SignalTimedOut,
    StepFailed,
    WorkflowCancelled,
    WorkflowError,
)
from tasksaga.workflow.futures import AnyOf, ChildRun, WorkflowFuture

SIGNAL_TIMED_OUT = "SignalTimedOut"
_UNDO = "compensate:"  # the key of a child's compensation among the driver's futures
Random = Callable[[], float]


@dataclass
class _Routine:
    """An ``async def`` helper run beside the body (``wf.all(helper(wf), ...)``)."""

    coroutine: Any
    future: WorkflowFuture[Any]
    blocked: WorkflowFuture[Any] | None = None


class WorkflowDriver:
    def __init__(self, definition: WorkflowDefinition, history: list[Recorded]) -> None:
        self.definition = definition
        self.outcome: Outcome | None = None
        self.now_ms = 0
        self._random: Random = lambda: 0.0
        self._tape = CommandTape(history)
        self._uses: Counter[str] = Counter()
        self._futures: dict[str, WorkflowFuture[Any]] = {}
        self._commands: dict[str, Command] = {}
        self._abandoned: list[str] = []
        self._patches: dict[str, bool] = {}
        self._coroutine: Any = None
        self._blocked: WorkflowFuture[Any] | None = None
        self._routines: list[_Routine] = []
        self._shield_depth = 0
        self._cancel_pending: str | None = None
        self.cancelled: str | None = None  # the reason, once delivered to the body
        self.suspended_before = False  # the history holds a WorkflowDiverged
        self.task_id = ""
        self._child_ends: dict[str, tuple[str, str]] = {}  # a child await: (status, reason)

    # -- driving ---------------------------------------------------------------------------

    def feed(self, event: ev.TaskEvent, now_ms: int, random: Random,
             task_id: str = "") -> None:
        """Apply one history event: start the body, resolve what it awaits, cancel it."""
        self.now_ms, self._random = now_ms, random
        match event:
            case ev.TaskSubmitted():
                self._start(event.request_json, event.task_id or task_id)
            case ev.StepCompleted():
                self._resolve(event.step, event.data_json, None)
            case ev.StepFailed(will_retry=False):
                self._resolve(event.step, None, self._step_error(event))
            case ev.ChildTaskEnded():
                self._child_ends[event.step] = (event.status, event.reason or "")
            case ev.StepCompensated():
                self._resolve(_UNDO + event.step, None, None)
            case ev.StepCompensationFailed(will_retry=False):
                child = self._futures.get(event.step)
                self._resolve(_UNDO + event.step, None, ChildCompensationFailed(
                    event.step, child.task_id if isinstance(child, ChildRun) else "",
                    event.error_type.removeprefix("ChildTask"), event.error_message))
            case ev.CancellationRequested():
                self._cancel(event.reason)
            case ev.WorkflowDiverged():
                self.suspended_before = True

    def finish_replay(self) -> None:
        """After the last history event: what the history records must all have been issued,
        and nothing more (unless the task was suspended: then the fixed body goes on from
        where it stopped)."""
        if self.outcome is not None:
            return
        recorded = self._tape.replayed()
        if recorded is not None:
            self._diverge(recorded.describe(), "nothing: the body waits without issuing it")
        elif self._tape.new and not self.suspended_before:
            extra = self._tape.new[0]
            self._diverge("no further command before the next result", extra.describe(),
                          extra.index, extra.location)

    def take_new(self) -> list[Command]:
        """The commands issued since the last call that the history does not record yet."""
        return self._tape.take_new()

    def take_abandoned(self) -> list[str]:
        """Names of commands the body no longer waits for (the losers of ``wf.any``)."""
        names, self._abandoned = self._abandoned, []
        return names

    @property
    def issued(self) -> list[Recorded]:
        """Every command the body issued, in order."""
        return self._tape.issued

    def command(self, name: str) -> Command | None:
        return self._commands.get(name)

    @property
    def waits_on(self) -> set[str]:
        """Commands not resolved yet."""
        return {name for name, f in self._futures.items() if not f.done}

    # -- what the body calls (through WorkflowContext) ---------------------------------------

    def issue(self, kind: Kind, base: str, **fields: Any) -> WorkflowFuture[Any]:
        self._uses[base] += 1
        command = self._tape.check(Command(kind, nth_name(base, self._uses[base]),
                                        self._tape.next_index, self._location(), **fields))
        future: WorkflowFuture[Any] = (
            ChildRun(command.name, child_task_id(self.task_id, command.name, 1),
                     command.child_type)
            if kind is Kind.CHILD else WorkflowFuture(command.name))
        self._futures[command.name] = future
        self._commands[command.name] = command
        return future

    def compensate(self, child: ChildRun[Any]) -> WorkflowFuture[None]:
        """Undo a child that completed (``wf.compensate_child``): a ``CompensateTask``."""
        if self._futures.get(child.name) is not child:
            raise WorkflowError(f"wf.compensate_child takes what wf.child returned in this "
                                f"workflow, got {child!r}")
        if not child.done or child.error is not None:
            raise WorkflowError(f"wf.compensate_child({child.name!r}): only a child that "
                                "completed can be compensated (await it first; a child that "
                                "failed or was cancelled undid itself)")
        key = _UNDO + child.name
        if key in self._futures:
            raise WorkflowError(f"child {child.name!r} is compensated a second time")
        command = self._tape.check(Command(Kind.COMPENSATE, child.name, self._tape.next_index,
                                        self._location()))
        future: WorkflowFuture[None] = WorkflowFuture(key)
        self._futures[key] = future
        self._commands[key] = command
        return future

    def record(self, record_kind: str, base: str, live_value: Callable[[], str]) -> str:
        """A value the body reads (now, random, uuid): recorded, so a replay reads it back."""
        self._uses[base] += 1
        name = nth_name(base, self._uses[base])
        recorded = self._tape.replayed()
        if recorded is not None:  # checked, read back
            self._tape.check(Command(Kind.RECORD, name, self._tape.next_index, self._location(),
                                  record_kind=record_kind))
            return recorded.value_json
        command = Command(Kind.RECORD, name, self._tape.next_index, self._location(),
                          value_json=live_value(), record_kind=record_kind)
        self._tape.check(command)
        return command.value_json

    def patched(self, patch_id: str) -> bool:
        """True for new code paths: in a history recorded before the patch, False."""
        if patch_id in self._patches:
            return self._patches[patch_id]
        name = f"patch:{patch_id}"
        recorded = self._tape.replayed()
        if recorded is not None and not (recorded.kind is Kind.RECORD and recorded.name == name):
            self._patches[patch_id] = False  # recorded before the patch: the old path
            return False
        self._tape.check(Command(Kind.RECORD, name, self._tape.next_index, self._location(),
                              value_json="true", record_kind="patch"))
        self._patches[patch_id] = True
        return True

    def any_of(self, futures: tuple[WorkflowFuture[Any], ...]) -> AnyOf:
        combined = AnyOf(futures)

        def abandon_losers(done: WorkflowFuture[Any]) -> None:
            self._abandoned += [f.name for f in combined.losers() if f.name in self._commands]

        combined.listen(abandon_losers)
        return combined

    def spawn(self, coroutine: Any) -> WorkflowFuture[Any]:
        """Run an ``async def`` helper beside the body, now, until its first await; its
        future resolves with what it returns (or raises). Routines resume in the order they
        were spawned, so a replay runs them the same way."""
        name = getattr(coroutine, "__qualname__", "routine")
        routine = _Routine(coroutine, WorkflowFuture(f"{name}()"))
        self._routines.append(routine)
        self._run_routine(routine, None)
        return routine.future

    def shield_enter(self) -> None:
        self._shield_depth += 1

    def shield_exit(self) -> str | None:
        """Leaving a shield: the cancellation that came inside it, to raise now."""
        self._shield_depth -= 1
        if self._shield_depth == 0 and self._cancel_pending is not None:
            reason, self._cancel_pending = self._cancel_pending, None
            self.cancelled = reason
            return reason
        return None

    def now(self) -> int:
        return self.now_ms

    def random(self) -> float:
        return self._random()

    # -- inside -------------------------------------------------------------------------------

    def _start(self, request_json: str, task_id: str) -> None:
        from tasksaga.workflow.context import WorkflowContext  # the body's view of this driver

        try:
            request = self.definition.request_type.model_validate_json(request_json)
        except ValueError as error:  # the deployed request model no longer reads it
            self.outcome = Divergence(0, "the request", "a request the deployed model reads",
                                      f"{type(error).__name__}: {error}")
            return
        self.task_id = task_id
        coroutine = self.definition.body(WorkflowContext(self, task_id), request)
        if not inspect.iscoroutine(coroutine):
            self.outcome = Failed(f"WorkflowError: the body of {self.definition.name} is not "
                                  "an async def (TS180)")
            return
        self._coroutine = coroutine
        self._advance()

    def _resolve(self, name: str, data_json: str | None, error: BaseException | None) -> None:
        future = self._futures.get(name)
        if future is None or future.done:
            return  # a result of something no longer awaited (or never issued: replay checks)
        command = self._commands[name]
        if error is None:
            try:
                value = parse_result(self.definition.signal_types, command, data_json or "null")
            except Exception as problem:  # a result that does not fit the declared model
                error = WorkflowError(f"the result of {command.describe()} is not valid: "
                                      f"{problem}")
        future.resolve(None if error else value, error)
        self._resume_if_ready()

    def _cancel(self, reason: str) -> None:
        if self.outcome is not None or self.cancelled is not None:
            return
        if self._shield_depth:
            self._cancel_pending = reason
            return
        self.cancelled = reason
        for routine in list(self._routines):  # helpers first, each at its own await
            if not routine.future.done and self.outcome is None:
                routine.blocked = None
                self._run_routine(routine, WorkflowCancelled(reason))
        self._blocked = None
        self._advance(WorkflowCancelled(reason))

    def _resume_if_ready(self) -> None:
        """Resume, in spawn order and then the body, whatever waits on something now done,
        until nothing more can run (a helper that ends may free the body)."""
        progress = True
        while progress and self.outcome is None:
            progress = False
            for routine in list(self._routines):
                if (routine.blocked is not None and routine.blocked.done
                        and not routine.future.done and self.outcome is None):
                    routine.blocked = None
                    self._run_routine(routine, None)
                    progress = True
            if self._blocked is not None and self._blocked.done and self.outcome is None:
                self._blocked = None
                self._advance()
                progress = True

    def _run_routine(self, routine: _Routine, error: BaseException | None) -> None:
        while True:
            try:
                if error is not None:
                    yielded = routine.coroutine.throw(error)
                else:
                    yielded = routine.coroutine.send(None)
            except StopIteration as stop:
                routine.future.resolve(stop.value)
                return
            except Diverged as diverged:
                self.outcome = Divergence(diverged.index, diverged.location, diverged.expected,
                                          diverged.got)
                return
            except Exception as raised:
                routine.future.resolve(error=raised)
                return
            error = None
            if not isinstance(yielded, WorkflowFuture):
                error = WorkflowError(f"a helper awaited {yielded!r}, which is not a workflow "
                                      "awaitable")
            elif not yielded.done:
                routine.blocked = yielded
                return

    def _advance(self, error: BaseException | None = None) -> None:
        while self.outcome is None:
            try:
                if error is not None:
                    yielded = self._coroutine.throw(error)
                else:
                    yielded = self._coroutine.send(None)
            except StopIteration as stop:
                self._end(partial(completed_outcome, self.definition.response_type,
                                  stop.value))
                return
            except Diverged as diverged:
                self.outcome = Divergence(diverged.index, diverged.location, diverged.expected,
                                          diverged.got)
                return
            except Exception as raised:
                self._end(partial(failed_outcome, self.cancelled, raised))
                return
            error = None
            if not isinstance(yielded, WorkflowFuture):
                error = WorkflowError(
                    f"the body awaited {yielded!r}, which is not a workflow awaitable: await "
                    "only wf.step, wf.sleep, wf.signal, wf.child, wf.all and wf.any (no "
                    "asyncio, no I/O in a workflow body)")
            elif not yielded.done:
                self._blocked = yielded
                return

    def _end(self, outcome: Callable[[], Outcome]) -> None:
        """The body returned or raised: in a replay, only where the history ends too."""
        recorded = self._tape.replayed()
        if recorded is not None:
            self._diverge(recorded.describe(), "the end of the workflow")
            return
        try:
            self.outcome = outcome()
        except WorkflowError as error:
            self.outcome = Failed(f"WorkflowError: {error}")

    def _step_error(self, event: ev.StepFailed) -> StepFailed:
        child = self._futures.get(event.step)
        if isinstance(child, ChildRun):
            status, reason = self._child_ends.get(event.step, ("", event.error_message))
            return ChildFailed(event.step, child.task_id,
                               status or event.error_type.removeprefix("ChildTask"), reason)
        if event.error_type == SIGNAL_TIMED_OUT:
            return SignalTimedOut(event.step, event.error_type, event.error_message)
        return StepFailed(event.step, event.error_type, event.error_message)

    def _diverge(self, expected: str, got: str, index: int | None = None,
                 location: str | None = None) -> None:
        self.outcome = Divergence(index or self._tape.cursor + 1, location or self._location(),
                                  expected, got)

    def _location(self) -> str:
        name = getattr(self.definition.body, "__qualname__", self.definition.name)
        frame = getattr(self._coroutine, "cr_frame", None)
        return f"{name} line {frame.f_lineno}" if frame is not None else name

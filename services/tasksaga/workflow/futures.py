"""The awaitables of a workflow body. Awaiting one that is not resolved yields it to the
driver (``tasksaga.workflow.driver``), which resumes the body once it is: the body is a
coroutine driven by hand with ``send``/``throw``, never by an event loop."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class WorkflowFuture(Generic[T]):
    """The outcome of one command (a step, a sleep, a signal) or of a combination."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None
        self._listeners: list[Callable[[WorkflowFuture[Any]], None]] = []

    def resolve(self, value: Any = None, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done, self.value, self.error = True, value, error
        for listener in self._listeners:
            listener(self)
        self._listeners.clear()

    def listen(self, listener: Callable[[WorkflowFuture[Any]], None]) -> None:
        if self.done:
            listener(self)
        else:
            self._listeners.append(listener)

    def __await__(self) -> Generator[WorkflowFuture[Any], None, T]:
        if not self.done:
            yield self  # the driver resumes the body when this future is done
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[no-any-return]


class AllOf(WorkflowFuture[list[Any]]):
    """Done when every child is, with their values in order; fails with the first failure."""

    def __init__(self, children: tuple[WorkflowFuture[Any], ...]) -> None:
        super().__init__("all(" + ", ".join(c.name for c in children) + ")")
        self.children = children
        if not children:
            self.resolve([])
        for child in children:
            child.listen(self._child_done)

    def _child_done(self, child: WorkflowFuture[Any]) -> None:
        if child.error is not None:
            self.resolve(error=child.error)
        elif all(c.done for c in self.children):
            self.resolve([c.value for c in self.children])


class AnyOf(WorkflowFuture[Any]):
    """Done with the value of the first child to succeed; fails with the first failure when
    every child failed. The other children are abandoned (running steps are told to stop)."""

    def __init__(self, children: tuple[WorkflowFuture[Any], ...]) -> None:
        if not children:
            raise ValueError("wf.any needs at least one awaitable")
        super().__init__("any(" + ", ".join(c.name for c in children) + ")")
        self.children = children
        for child in children:
            child.listen(self._child_done)

    def _child_done(self, child: WorkflowFuture[Any]) -> None:
        if child.error is None:
            self.resolve(child.value)
        elif all(c.done and c.error is not None for c in self.children):
            self.resolve(error=next(c.error for c in self.children))

    def losers(self) -> list[WorkflowFuture[Any]]:
        return [c for c in self.children if not c.done]


class ChildRun(WorkflowFuture[T]):
    """A child task the body started (``wf.child``): awaiting it gives the child's response;
    it is also the handle ``wf.compensate_child`` takes. ``task_id`` is derived from the
    parent and the await's name, so every replay names the same child."""

    def __init__(self, name: str, task_id: str, task_type: str) -> None:
        super().__init__(name)
        self.task_id = task_id
        self.task_type = task_type

    @property
    def completed(self) -> bool:
        """The child completed and its response was delivered: it may be compensated."""
        return self.done and self.error is None

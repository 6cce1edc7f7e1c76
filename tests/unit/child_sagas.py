"""A parent with a child step, its child, a depends_on downstream, and a driver that carries
the commands one task sends another (decide() only: no servers)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tasksaga.core import SagaContext, StepContext, TaskDefinition
from tasksaga.core import messages as msg
from tasksaga.core.decide import Decision
from tests.unit.sagas import Data, Driver, Req


class ChildReq(BaseModel):
    seat: str
    width: int


class ChildResp(BaseModel):
    room: str


def _noop(ctx: StepContext[Any]) -> Data:
    return Data(value=ctx.step)


def _undo(ctx: StepContext[Any], data: Any) -> None:
    return None


def child_request(ctx: SagaContext[Req]) -> ChildReq:
    """From the request and the data of the earlier step Hold."""
    return ChildReq(seat=ctx.data_of("Hold", Data).value, width=ctx.request.width)


def broken_request(ctx: SagaContext[Req]) -> ChildReq:
    raise LookupError("no seat in the context")


def child_task(pivot: bool = False, cancellable: bool = True) -> TaskDefinition:
    """C1 then C2, both compensable (or C2 the pivot, without compensation)."""
    task = TaskDefinition("Room", queue="q", request=ChildReq, response=ChildResp,
                          step_timeout_seconds=30, cancellable=cancellable)
    task.step("C1", order=1, data=Data)(_noop)
    task.compensation("C1")(_undo)
    task.step("C2", order=2, data=Data, pivot=pivot)(_noop)
    if not pivot:
        task.compensation("C2")(_undo)
    task.response_builder(lambda ctx: ChildResp(room=f"room-for-{ctx.request.seat}"))
    return task


def parent_task(child: TaskDefinition, request: Any = child_request) -> TaskDefinition:
    """Hold, then the child step Room, then Pay; Hold and Pay compensable."""
    task = TaskDefinition("Trip", queue="q", request=Req, step_timeout_seconds=30)
    task.step("Hold", order=1, data=Data)(_noop)
    task.compensation("Hold")(_undo)
    task.child_step("Room", order=2, task=child, request=request)
    task.step("Pay", order=3, data=Data)(_noop)
    task.compensation("Pay")(_undo)
    return task


class Family:
    """A parent driver and the driver of the child it started; ``deliver`` hands each the
    task commands the other sent (as task-commands would), once."""

    def __init__(self, parent: TaskDefinition, child: TaskDefinition) -> None:
        self.parent = Driver(parent)
        self.child = Driver(child)
        self._delivered = {id(self.parent): 0, id(self.child): 0}

    def start_child(self) -> msg.SubmitTask:
        """Submit the parent, complete Hold: the child step starts; submit the child."""
        self.parent.submit()
        self.parent.succeed("Hold")
        submits = self.sent(self.parent, msg.SubmitTask)
        assert len(submits) == 1
        submit: msg.SubmitTask = submits[0]
        self.child.send(submit)
        self._delivered[id(self.parent)] = len(self.parent.commands)
        return submit

    def sent(self, driver: Driver, kind: type[Any]) -> list[Any]:
        return [c for c in driver.commands if isinstance(c, kind)]

    def deliver(self) -> list[Decision]:
        """Every task command not delivered yet, to the task it names."""
        decisions = []
        for sender, receiver in ((self.parent, self.child), (self.child, self.parent)):
            fresh = sender.commands[self._delivered[id(sender)]:]
            self._delivered[id(sender)] = len(sender.commands)
            for command in fresh:
                if isinstance(command, msg.TaskToTask):
                    decisions.append(receiver.send(command))
        return decisions

    def finish_child(self) -> None:
        self.child.succeed("C1")
        self.child.succeed("C2")
        self.deliver()

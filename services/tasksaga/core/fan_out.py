"""The rules of a dynamic fan-out (``task.for_each``): expand, launch, close, compensate. Pure.

When the saga reaches a for_each step, ``items(ctx)`` runs here, in decide, and its items are
recorded (``FanOutExpanded``). Instances start in item order, at most ``max_parallel`` in
flight (running, or waiting for a retry). Every instance is an ordinary step for the other
rules (``Each[3]``: dispatch, retries, timeouts, heartbeats, surplus effects), so only the
group's rules live here:

- ALL: every instance must succeed; one failing for good fails the step (the running ones are
  told to stop, the completed ones compensated in reverse item order).
- ANY: the first success completes the step; the others are stopped or superseded.
- QUORUM: ``quorum`` successes complete it; it fails as soon as too few can still succeed.

Every check reads the fold's counts, so a decision costs O(1) per instance it touches, never a
pass over the whole group (closing, cancelling and starting compensation walk it once).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from pydantic import BaseModel

from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.attempts import SUPERSEDED
from tasksaga.core.fan_out_shape import MAX_ITEMS, ForEach, instance_name, parse_instance
from tasksaga.core.fan_out_state import FanOutState
from tasksaga.core.pivot import passed_pivot
from tasksaga.core.state import StepState, StepStatus, TaskState, TaskStatus
from tasksaga.core.step_actions import CANCELLED
from tasksaga.core.steps import AwaitMode, StepDef
from tasksaga.core.waits import WaitActions

FAN_OUT_FAILED = "FanOutFailed"
ITEMS_ERROR = "FanOutItemsError"
# The items travel in one FanOutExpanded event, published to Kafka (1 MiB records): keep them
# well under that (MAX_ITEMS too). Large data belongs in object storage; items name it (keys).
MAX_ITEMS_BYTES = 512 * 1024
_IN_FLIGHT = (StepStatus.RUNNING, StepStatus.RETRY_SCHEDULED)


class ItemsError(ValueError):
    """``items(ctx)`` did not give a list of pydantic models or JSON-able values."""


def items_json(items: Any) -> list[str]:
    """Each item as JSON, in order; ItemsError says which item is wrong and why."""
    if not isinstance(items, list | tuple):
        raise ItemsError(f"items must return a list, got {type(items).__name__}")
    if len(items) > MAX_ITEMS:
        raise ItemsError(f"items returned {len(items)} items, over the limit of {MAX_ITEMS} "
                         "per for_each step: split the work, or fan out over batches")
    encoded = []
    for index, item in enumerate(items):
        if isinstance(item, BaseModel):
            encoded.append(item.model_dump_json())
            continue
        try:
            encoded.append(json.dumps(item, allow_nan=False, separators=(",", ":")))
        except (TypeError, ValueError) as error:
            raise ItemsError(f"item {index} is neither a pydantic model nor JSON-able "
                             f"({type(item).__name__}): {error}") from None
    size = sum(len(item) for item in encoded)
    if size > MAX_ITEMS_BYTES:
        raise ItemsError(f"the items are {size} bytes of JSON, over the limit of "
                         f"{MAX_ITEMS_BYTES}: pass keys of data kept in object storage, not "
                         "the data")
    return encoded


class FanOutActions(WaitActions):
    """Starting, advancing, closing and compensating for_each steps."""

    # -- hooks of the shared rules -------------------------------------------------------------

    def start(self, step: StepDef, attempt: int) -> None:
        if step.for_each is None or parse_instance(step.name) is not None:
            super().start(step, attempt)
        elif step.name in self.state.fan_outs:  # an operator's forward retry, past the pivot
            fan_out = self.state.fan_outs[step.name]
            self.emit(ev.FanOutRetried(step.name, attempt, fan_out.count(StepStatus.FAILED),
                                       self.now))
            self.advance_fan_out(step)
        else:
            self.expand(step, step.for_each, attempt)

    def send(self, command: msg.Outbound) -> None:
        """An instance's commands carry its item and index."""
        if isinstance(command, msg.ExecuteStep | msg.CompensateStep) and self.state.fan_outs:
            parsed = parse_instance(command.step)
            fan_out = self.state.fan_outs.get(parsed[0]) if parsed else None
            if parsed is not None and fan_out is not None and parsed[1] < fan_out.size:
                command = _with_item(command, fan_out.items[parsed[1]], parsed[1])
        super().send(command)

    def start_compensation(self, reason: str) -> None:
        # A fan-out still open closes first, so only its instances are told to stop.
        for name in self.state.fan_outs:
            parent = self.state.step(name)
            if parent.status is StepStatus.RUNNING:
                self.emit(ev.StepFailed(name, parent.attempt, CANCELLED,
                                        "not finished: the task is compensating", False,
                                        self.now))
        super().start_compensation(reason)

    # -- forward -------------------------------------------------------------------------------

    def expand(self, step: StepDef, spec: ForEach, attempt: int) -> None:
        try:
            items = items_json(spec.items(self.saga_context()))
        except Exception as error:  # user code: a broken items function fails its step
            source = "items function" if spec.matrix is None else "matrix"
            self.fail_step(step.name, attempt, ITEMS_ERROR,
                           f"{source} {spec.items_name} of step {step.name}: "
                           f"{type(error).__name__}: {error}", False)
            return
        self.emit(ev.FanOutExpanded(step.name, attempt, items, self.now))
        self.advance_fan_out(step)

    def advance_fan_out(self, step: StepDef) -> None:
        """Close the group when it is decided; otherwise start queued instances."""
        fan_out = self.state.fan_outs.get(step.name)
        if (step.for_each is None or fan_out is None or self.state.status is not TaskStatus.RUNNING
                or self.state.step(step.name).status is not StepStatus.RUNNING):
            return
        spec = step.for_each
        required = spec.required_successes(fan_out.size)
        succeeded = fan_out.count(StepStatus.COMPLETED)
        if succeeded >= required:
            self.emit(ev.FanOutCompleted(step.name, succeeded, fan_out.size, self.now))
            self.release_instances(step.name)
            return
        failed = fan_out.count(StepStatus.FAILED)  # failed for good: a retry is in flight
        if fan_out.size - failed < required:
            if fan_out.count(*_IN_FLIGHT) and passed_pivot(self.definition, self.state):
                return  # forward recovery: what runs finishes first, then an operator decides
            self.fail_step(step.name, self.state.step(step.name).attempt, FAN_OUT_FAILED,
                           _why_failed(spec, fan_out, failed, required), False)
            return
        self.launch_instances(step, spec.max_parallel or fan_out.size)

    def launch_instances(self, step: StepDef, limit: int) -> None:
        """Start waiting instances in item order while fewer than ``limit`` are in flight.
        Only after a forward retry are there started instances to skip above ``launched``;
        the fold then moves ``launched`` past each dispatched one, so each is walked once."""
        fan_out = self.state.fan_outs[step.name]
        index = fan_out.launched
        while (index < fan_out.size and fan_out.count(StepStatus.PENDING)
               and fan_out.count(*_IN_FLIGHT) < limit):
            instance = fan_out.instances.get(index)
            if instance is None or instance.status is StepStatus.PENDING:
                attempt = 0 if instance is None else instance.attempt
                self.dispatch(self.definition.get_step(instance_name(step.name, index)),
                              attempt + 1)
                fan_out = self.state.fan_outs[step.name]
            index += 1

    def release_instances(self, name: str) -> None:
        """A completed group no longer needs its unfinished instances (ANY, QUORUM)."""
        fan_out = self.state.fan_outs[name]
        if not fan_out.count(*_IN_FLIGHT):
            return
        reason = f"step {name} completed: {fan_out.count(StepStatus.COMPLETED)} of " \
                 f"{fan_out.size} instances succeeded"
        for instance in list(fan_out.instances)[:fan_out.launched]:
            if instance is None:
                continue
            if instance.status is StepStatus.RUNNING:
                self.request_step_cancellation(instance.name, reason)
            elif instance.status is StepStatus.RETRY_SCHEDULED:
                self.emit(ev.StepFailed(instance.name, instance.attempt, SUPERSEDED, reason,
                                        False, self.now))

    # -- backward ------------------------------------------------------------------------------

    def compensate_open_fan_outs(self) -> bool:
        """Instances of a fan-out that never completed are the latest effects: they are
        compensated first. True when a compensation was dispatched."""
        return any(self.compensate_instances(name) for name in self.state.fan_outs
                   if self.state.step(name).status is not StepStatus.COMPLETED)

    def compensate_instances(self, name: str) -> bool:
        """Dispatch the compensation of the completed instance of highest index, if any."""
        fan_out = self.state.fan_outs.get(name)
        if fan_out is None or not self.definition.get_step(name).has_compensation:
            return False
        for index in range(min(fan_out.compensate_below, fan_out.size) - 1, -1, -1):
            instance = fan_out.instances.get(index)
            if instance is not None and instance.status is StepStatus.COMPLETED:
                self.dispatch_compensation(
                    self.definition.get_step(instance_name(name, index)), 1)
                return True
        return False


def steps_and_instances(state: TaskState) -> list[StepState]:
    """The steps that commands are sent for: a for_each step's instances in its place (the
    step itself has none). One pass: for an operator's action, not for every message."""
    steps = [s for name, s in state.steps.items() if name not in state.fan_outs]
    for fan_out in state.fan_outs.values():
        steps += [s for s in fan_out.instances if s is not None]
    return steps


def _with_item(command: msg.ExecuteStep | msg.CompensateStep, item: str,
               index: int) -> msg.ExecuteStep | msg.CompensateStep:
    return replace(command, item_json=item, item_index=index)


def _why_failed(spec: ForEach, fan_out: FanOutState, failed: int, required: int) -> str:
    first = fan_out.first_failure
    cause = ""
    if first is not None:
        instance = fan_out.instances.get(first)
        if instance is not None:
            cause = (f"; first: {instance.name}: {instance.error_type}: "
                     f"{instance.error_message}")
    if spec.mode is AwaitMode.ALL:
        return f"{failed} of {fan_out.size} instances failed{cause}"
    if required > fan_out.size:
        return (f"quorum {required} cannot be reached with {fan_out.size} items")
    return (f"{failed} of {fan_out.size} instances failed: {required} successes can no "
            f"longer be reached{cause}")

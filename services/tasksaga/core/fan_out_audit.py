"""How a fan-out reads in the audit trail: summaries instead of a line per routine instance
event (docs/dsl.md, "Dynamic fan-out"). Pure.

The log keeps every instance event. The audit trail leaves out the routine ones (an instance
dispatched for its first attempt, completed, its compensation dispatched, compensated): the
expansion, the group's completion and the task's end say how many there were. Everything
else an instance does (a failure, a retry, a cancellation, a surplus effect, a compensation
that failed) keeps its own line, and the status shows every instance.
"""

from __future__ import annotations

from tasksaga.core import events as ev
from tasksaga.core.fan_out_names import parse_instance
from tasksaga.core.state import StepStatus, TaskState


def summarised(event: ev.TaskEvent) -> bool:
    """A routine instance event that the audit trail summarises instead of listing."""
    if isinstance(event, ev.StepDispatched | ev.StepCompensationDispatched):
        return event.attempt == 1 and parse_instance(event.step) is not None
    if isinstance(event, ev.StepCompleted | ev.StepCompensated):
        return parse_instance(event.step) is not None
    return False


def fan_out_line(event: ev.FanOutExpanded | ev.FanOutCompleted | ev.FanOutRetried) -> str:
    if isinstance(event, ev.FanOutRetried):
        return (f"step {event.step} retried forward: its {event.retried} failed instances run "
                "again, each with a fresh retry budget")
    if isinstance(event, ev.FanOutExpanded):
        if not event.items_json:
            return f"step {event.step} has no items: nothing to run"
        last = len(event.items_json) - 1
        return (f"step {event.step} expanded into {len(event.items_json)} instances "
                f"({event.step}[0] to {event.step}[{last}])")
    return (f"step {event.step} completed: {event.succeeded} of {event.of} instances "
            "succeeded")


def compensated_instances(state: TaskState) -> str:
    """``"; 12 instances of Each compensated"`` for the line that ends the task."""
    parts = [f"{f.count(StepStatus.COMPENSATED)} instances of {name}"
             for name, f in state.fan_outs.items() if f.count(StepStatus.COMPENSATED)]
    return f" ({', '.join(parts)} compensated)" if parts else ""


def has_completed_instances(state: TaskState) -> bool:
    return any(f.count(StepStatus.COMPLETED, StepStatus.COMPENSATING,
                       StepStatus.COMPENSATION_RETRY_SCHEDULED, StepStatus.COMPENSATED,
                       StepStatus.COMPENSATION_FAILED) for f in state.fan_outs.values())

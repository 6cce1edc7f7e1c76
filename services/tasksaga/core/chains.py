"""Chains: the steps a worker runs one after the other without a hop through the orchestrator.

A step's first dispatch may carry a *chain*: the steps that follow it when nothing needs the
orchestrator between them (each alone in its stage, unconditional, on the same queue and
capabilities, no wait, sleep, child, fan-out, upload or artifacts). The worker runs the step,
sends its result saying it started the next one (``StepSucceeded.started_next``), runs that
one under the same lease, and so on while each succeeds. The orchestrator records every
transition as before, the chained dispatch included (``StepDispatched.chained_after``); it
only sends no command for it. Each step of the chain still has its own timeout, result,
retries and compensation.

Attempt 1 of a chain's step belongs to the chain (``StepState.chain_reserved``): when the
orchestrator must start such a step itself (the chain stopped, or an earlier attempt of the
step before it completed it), it starts at attempt 2, so a chain still running attempt 1 is
an earlier attempt of the same step, whose late result the rules for overlapping attempts
already handle (``tasksaga.core.attempts``). Pure.
"""

from __future__ import annotations

from tasksaga.core.definition import TaskDefinition
from tasksaga.core.fan_out_names import parse_instance
from tasksaga.core.messages import ExecuteStep
from tasksaga.core.state import StepStatus, TaskState, TaskStatus
from tasksaga.core.steps import Placement, Stage, StepDef

# A chain holds its command's offset until its last step: bounded, so a redelivered chain
# never has many steps to look up, and a long saga still passes the orchestrator now and then.
MAX_CHAIN = 16


def chain_after(definition: TaskDefinition, state: TaskState, step: StepDef,
                attempt: int) -> list[str]:
    """The steps the worker of ``step``'s dispatch may run after it, in order (often none)."""
    if attempt != 1 or state.status is not TaskStatus.RUNNING or not _chainable(step):
        return []
    stages = definition.stages()
    position = next(i for i, s in enumerate(stages) if any(m.name == step.name for m in s.steps))
    if not _alone(stages[position]):
        return []
    chain: list[str] = []
    for stage in stages[position + 1:position + 1 + MAX_CHAIN]:
        member = stage.steps[0]
        if not (_alone(stage) and _chainable(member) and _same_route(definition, step, member)
                and member.condition is None):
            break
        current = state.step(member.name)
        if current.status is not StepStatus.PENDING or current.chain_reserved:
            break
        chain.append(member.name)
    return chain


def read_by(step: StepDef, available: dict[str, str]) -> dict[str, str]:
    """The data ``step`` reads of ``available`` (its declared ``reads``, else all of it)."""
    if step.reads is None:
        return dict(available)
    return {name: available[name] for name in step.reads if name in available}


def _alone(stage: Stage) -> bool:
    return len(stage.steps) == 1 and stage.group is None


def _chainable(step: StepDef) -> bool:
    return (step.placement is Placement.WORKER and step.for_each is None
            and parse_instance(step.name) is None and step.upload is None
            and step.child is None and step.sleep is None and step.signal is None
            and not step.produces and not step.consumes)


def _same_route(definition: TaskDefinition, first: StepDef, other: StepDef) -> bool:
    return (definition.queue_of(first) == definition.queue_of(other)
            and first.requires == other.requires)


def chained_command(command: ExecuteStep, definition: TaskDefinition, name: str,
                    available: dict[str, str], now_ms: int) -> ExecuteStep:
    """What the worker of ``command``'s chain runs as step ``name``: attempt 1, under the
    command's lease, with the data it reads of what the task and the chain so far produced."""
    step = definition.get_step(name)
    return ExecuteStep(
        task_id=command.task_id, task_type=command.task_type, step=name, attempt=1,
        queue=command.queue, request_json=command.request_json,
        step_data=read_by(step, available), idempotency_key=f"{command.task_id}:{name}:1",
        timeout_at_ms=now_ms + definition.dispatch_timeout_ms(step),
        fencing_token=command.fencing_token, definition_version=command.definition_version,
    )

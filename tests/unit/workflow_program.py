"""A workflow that runs a program of primitives given in its request: the property tests
generate programs (and step failures) and check the histories they record."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from tasksaga.core import RetryPolicy, SagaContext, StepContext, TaskDefinition
from tasksaga.workflow import StepFailed, WorkflowContext, step, workflow

PROGRAM_OPS = ("step", "catch", "all", "any", "sleep", "now", "random", "uuid", "routines",
               "child")
_RETRY = RetryPolicy(max_retries=1, delay_ms=50)


class Program(BaseModel):
    ops: list[str]


class Value(BaseModel):
    value: int = 0


def _op(index: int) -> object:
    def run(ctx: StepContext[Program], value: Value) -> Value:
        return Value(value=value.value + index)

    return step(name=f"op{index}", retry=_RETRY)(run)


op0, op1, op2, op3, op4, op5, op6, op7 = (_op(i) for i in range(8))
OPS = [op0, op1, op2, op3, op4, op5, op6, op7]


def _grow(ctx: StepContext[Value]) -> Value:
    return Value(value=ctx.request.value + 100)


def _grown(ctx: SagaContext[Value]) -> Value:
    return ctx.data_of("Grow", Value)


# The child task of the "child" op: a saga whose step Grow may be failed like the ops.
program_child = TaskDefinition("WfProgramChild", queue="wf", request=Value, response=Value,
                               max_retries=1, step_timeout_seconds=30)
program_child.step("Grow", order=1, data=Value)(_grow)
program_child.response_builder(_grown)


async def _helper(wf: WorkflowContext, handler: Any, value: Value, seconds: int) -> Value:
    result: Value = await wf.step(handler, value)
    await wf.sleep(timedelta(seconds=seconds))
    return result


@workflow("WfProgram", queue="wf", request=Program, response=Value)
async def program_flow(wf: WorkflowContext, program: Program) -> Value:
    value = Value()
    for index, op in enumerate(program.ops):
        handler, other = OPS[index], OPS[(index + 1) % len(OPS)]
        if op == "step":
            value = await wf.step(handler, value)  # type: ignore[arg-type]
        elif op == "catch":
            try:
                value = await wf.step(handler, value)  # type: ignore[arg-type]
            except StepFailed:
                value = Value(value=-1)
        elif op == "all":
            first, second = await wf.all(wf.step(handler, value),  # type: ignore[arg-type]
                                         wf.step(other, value))  # type: ignore[arg-type]
            value = Value(value=first.value + second.value)
        elif op == "any":
            value = await wf.any(wf.step(handler, value),  # type: ignore[arg-type]
                                 wf.step(other, value))  # type: ignore[arg-type]
        elif op == "sleep":
            await wf.sleep(timedelta(seconds=index + 1))
        elif op == "now":
            value = Value(value=value.value + wf.now().second)
        elif op == "random":
            value = Value(value=value.value + int(wf.random() * 10))
        elif op == "child":  # a failed child (Grow failed twice) is caught
            try:
                value = await wf.child(program_child, value)
            except StepFailed:
                value = Value(value=-2)
        elif op == "routines":
            first, second = await wf.all(_helper(wf, handler, value, index + 2),
                                         _helper(wf, other, value, 1))
            value = Value(value=first.value + second.value)
        else:
            value = Value(value=value.value + wf.uuid().int % 7)
    return value

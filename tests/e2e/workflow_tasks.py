"""Workflows of the e2e module (``TASKSAGA_TASK_MODULES=tests.e2e.workflow_tasks``).

``AwaitChild`` awaits the saga of ``tests/e2e/workflow_child_tasks.py`` (``wf.child``).
Every run of ``work`` writes a row to ``workflow_e2e_ledger`` when it starts, so the test
counts how often each await's step ran, including runs a kill cut short.
``TASKSAGA_E2E_WORKFLOW_VARIANT`` (read at import) changes ``Switch``'s first step as a
deployment of new code would: ``changed`` without a patch (non-deterministic for tasks in
flight), ``patched`` behind ``wf.patched`` (what fixes it).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
from pydantic import BaseModel

from tasksaga.core import StepContext
from tasksaga.workflow import WorkflowCancelled, WorkflowContext, step, workflow

QUEUE = "wfe2e"
VARIANT = os.environ.get("TASKSAGA_E2E_WORKFLOW_VARIANT", "original")
LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS workflow_e2e_ledger (
    task_id text NOT NULL, step text NOT NULL, attempt integer NOT NULL,
    pid integer NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp()
)"""
_local = threading.local()


class Run(BaseModel):
    step_ms: int = 0
    mode: str = ""
    steps: int = 0


class Value(BaseModel):
    n: int = 0


class ChildDone(BaseModel):
    steps: list[str]


def _ledger(ctx: StepContext[Any]) -> None:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(os.environ["TASKSAGA_DATABASE_URL"], autocommit=True)
        _local.conn = conn
    conn.execute("INSERT INTO workflow_e2e_ledger (task_id, step, attempt, pid)"
                 " VALUES (%s, %s, %s, %s)", (ctx.task_id, ctx.step, ctx.attempt, os.getpid()))


def _pause(ctx: StepContext[Run], ms: int) -> None:
    deadline = time.monotonic() + ms / 1000
    while time.monotonic() < deadline and not ctx.is_cancelled():
        time.sleep(0.05)


@step(queue=QUEUE)
def work(ctx: StepContext[Run], value: Value) -> Value:
    _ledger(ctx)
    _pause(ctx, ctx.request.step_ms)
    return Value(n=value.n + 1)


@step(queue=QUEUE)
def other(ctx: StepContext[Run], value: Value) -> Value:
    _ledger(ctx)
    return Value(n=value.n + 100)


@step(queue=QUEUE)
def undo(ctx: StepContext[Run], value: Value) -> None:
    _ledger(ctx)


@step(queue=QUEUE)
def quick(ctx: StepContext[Run], value: Value) -> Value:
    return Value(n=value.n + 1)


@workflow("SixAwaits", queue=QUEUE, request=Run, response=Value, signals={"go": None})
async def six_awaits(wf: WorkflowContext, run: Run) -> Value:
    first = await wf.step(work, Value())                                 # await 1
    await wf.sleep(timedelta(seconds=2))                                 # await 2
    second = await wf.step(work, first)                                  # await 3
    third, fourth = await wf.all(wf.step(work, second), wf.step(work, second))  # await 4
    await wf.signal("go")                                                # await 5
    return await wf.step(work, Value(n=third.n + fourth.n))              # await 6


@workflow("CancelMe", queue=QUEUE, request=Run, response=Value)
async def cancel_me(wf: WorkflowContext, run: Run) -> Value:
    done = await wf.step(quick, Value())
    try:
        if run.mode == "sleep":
            await wf.sleep(timedelta(minutes=10))
        else:
            await wf.step(work, done)
    except WorkflowCancelled:
        with wf.shield():
            await wf.step(undo, done)
        raise
    return done


@workflow("AwaitChild", queue=QUEUE, request=Run, response=Value)
async def await_child(wf: WorkflowContext, run: Run) -> Value:
    """The DSL saga WfE2eChild (tests/e2e/workflow_child_tasks.py) as a child, then a step."""
    child = await wf.child("WfE2eChild", Run(step_ms=run.step_ms), response=ChildDone)
    return await wf.step(work, Value(n=len(child.steps)))


@workflow("Switch", queue=QUEUE, request=Run, response=Value, signals={"go": None})
async def switch(wf: WorkflowContext, run: Run) -> Value:
    if VARIANT == "changed" or (VARIANT == "patched" and wf.patched("other-first")):
        first = await wf.step(other, Value())
    else:
        first = await wf.step(work, Value())
    await wf.signal("go")
    return await wf.step(work, first)


@workflow("LongLoop", queue=QUEUE, request=Run, response=Value)
async def long_loop(wf: WorkflowContext, run: Run) -> Value:
    value = Value()
    for _ in range(run.steps):
        value = await wf.step(quick, value)
    return value

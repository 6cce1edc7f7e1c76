"""Task definitions of the chaos suite (``TASKSAGA_TASK_MODULES=tests.chaos.ledger_tasks``).

Every step run writes a row to the ledger table ``chaos_ledger`` (keyed by idempotency key
and attempt) when it starts and another when it ends, and every compensation one, so a test
counts how often each was run, including runs a kill cut short. Each step also makes one
*effect* the way a careful handler would (a payment, an email): an insert into
``chaos_effects`` under the step's stable key, skipped when that key already has one.
``ctx.step_key`` (stable across the attempts of a step) is used when the worker provides it,
otherwise the per-attempt ``ctx.idempotency_key``; the ledger records which.

The request steers the work: ``sleep_ms`` per step (so kills land mid-step), ``fail_last``
(the last step fails for good, and every completed step is compensated), ``long_sleep_s`` in
the first step (a handler that outlives ``max.poll.interval.ms``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg
from pydantic import BaseModel

from tasksaga.core import RetryPolicy, SagaContext, StepContext, TaskDefinition
from tasksaga.core.definition import StepHandler
from tasksaga.core.errors import NonRetryableError

QUEUE = "chaos"
STEPS = ("Reserve", "Charge", "Ship")

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS chaos_ledger (
    id              bigserial   PRIMARY KEY,
    task_id         text        NOT NULL,
    step            text        NOT NULL,
    kind            text        NOT NULL,  -- 'start', 'execute' (its end) or 'compensate'
    idempotency_key text        NOT NULL,
    effect_key      text        NOT NULL,
    stable_key      boolean     NOT NULL,  -- effect_key is ctx.step_key (not per attempt)
    attempt         integer     NOT NULL,
    applied         boolean     NOT NULL,  -- this run made the effect (its key was new)
    pid             integer     NOT NULL,
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS chaos_ledger_by_task ON chaos_ledger (task_id, step, kind);
CREATE TABLE IF NOT EXISTS chaos_effects (
    effect_key text        NOT NULL,
    kind       text        NOT NULL,
    task_id    text        NOT NULL,
    step       text        NOT NULL,
    attempt    integer     NOT NULL,
    made_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (effect_key, kind)
);
CREATE INDEX IF NOT EXISTS chaos_effects_by_task ON chaos_effects (task_id, step);
"""


class ChaosRequest(BaseModel):
    sleep_ms: int = 0
    fail_last: bool = False
    long_sleep_s: float = 0.0


class StepDone(BaseModel):
    attempt: int
    pid: int


# One data type per step: ctx.data(type) must name one step.
STEP_DATA: dict[str, type[StepDone]] = {
    name: type(f"{name}Done", (StepDone,), {"__module__": __name__}) for name in STEPS}


class ChaosResponse(BaseModel):
    steps: list[str]


_local = threading.local()


def _connection() -> psycopg.Connection[Any]:
    """One autocommit connection per handler thread, reopened after a failure."""
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(os.environ["TASKSAGA_DATABASE_URL"], autocommit=True,
                               application_name="chaos-ledger")
        _local.conn = conn
    return conn


def record(ctx: StepContext[Any], kind: str, started: float, effect: bool = True) -> None:
    """The effect (once per effect key) and the ledger row of this run, in one transaction;
    ``effect`` False for a run that fails (it must leave nothing to compensate)."""
    step_key = str(getattr(ctx, "step_key", "") or "")
    effect_key = step_key or ctx.idempotency_key
    try:
        conn = _connection()
        with conn.transaction():
            made = effect and conn.execute(
                "INSERT INTO chaos_effects (effect_key, kind, task_id, step, attempt)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (effect_key, kind, ctx.task_id, ctx.step, ctx.attempt)).rowcount == 1
            conn.execute(
                "INSERT INTO chaos_ledger (task_id, step, kind, idempotency_key, effect_key,"
                " stable_key, attempt, applied, pid, started_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(%s))",
                (ctx.task_id, ctx.step, kind, ctx.idempotency_key, effect_key, bool(step_key),
                 ctx.attempt, made, os.getpid(), started))
    except psycopg.Error:
        _local.conn = None  # a broken connection (R9, R10): the next attempt reconnects
        raise


def _step(name: str, last: bool) -> StepHandler:
    data_type = STEP_DATA[name]

    def run(ctx: StepContext[ChaosRequest]) -> StepDone:
        started = time.time()
        record(ctx, "start", started, effect=False)  # counts runs a kill cut short, too
        if ctx.request.long_sleep_s and name == STEPS[0]:
            time.sleep(ctx.request.long_sleep_s)
        if ctx.request.sleep_ms:
            time.sleep(ctx.request.sleep_ms / 1000)
        if last and ctx.request.fail_last:
            record(ctx, "execute", started, effect=False)
            raise NonRetryableError("chaos: the last step fails on purpose")
        record(ctx, "execute", started)
        return data_type(attempt=ctx.attempt, pid=os.getpid())

    return run


def _undo(ctx: StepContext[ChaosRequest], data: Any) -> None:
    record(ctx, "compensate", time.time())


def _response(ctx: SagaContext[ChaosRequest]) -> ChaosResponse:
    return ChaosResponse(steps=sorted(ctx.step_data_json))


def _define(name: str, step_timeout_s: float) -> TaskDefinition:
    task = TaskDefinition(
        name, queue=QUEUE, request=ChaosRequest, response=ChaosResponse,
        retry=RetryPolicy(max_retries=5, delay_ms=200, max_delay_ms=2_000),
        step_timeout_seconds=step_timeout_s, cancellable=True)
    for order, step in enumerate(STEPS, start=1):
        task.step(step, order=order, data=STEP_DATA[step])(_step(step, order == len(STEPS)))
        task.compensation(step)(_undo)
    task.response_builder(_response)
    return task


# Kills (R1, R2, R5) leave steps without a result: a short step timeout bounds the wait for
# the retry when the command is not redelivered.
ChaosSaga = _define("ChaosSaga", step_timeout_s=15.0)
# R15: steps that take seconds against a long timeout; only a clock that jumped can fire it.
ChaosSlowSaga = _define("ChaosSlowSaga", step_timeout_s=600.0)

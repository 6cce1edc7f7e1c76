"""``POST /tasks/{task_id}/signals/{signal}``: the signal a wait_for step waits for (a human
step: an approval). docs/dsl.md, "Signals and sleeps".

The body is validated against the step's data model (422 with the field errors); the caller
needs the type's ``signal`` role. ``Signal-Id`` makes the request idempotent: a repeated id
answers 202 ``already_received`` and the orchestrator records nothing new (its inbox drops the
repeated command, its rules a repeated id). A signal sent before the task reaches the step is
kept and completes the step when it is reached. 409 when nothing can take the signal any more.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from tasksaga.adapters.clock import now_ms
from tasksaga.api.dependencies import ApiDependencies, Deps
from tasksaga.api.queries import ACCEPTED
from tasksaga.api.security import Caller
from tasksaga.api.task_access import authorized_task
from tasksaga.core import messages as msg
from tasksaga.core.audit import signal_line
from tasksaga.core.authorization import Action, Principal
from tasksaga.core.state import StepStatus, TaskStatus
from tasksaga.core.steps import StepDef

router = APIRouter()

# The step states in which a signal is still taken: not reached yet (kept), or waiting.
_TAKES_SIGNAL = (None, StepStatus.PENDING.value, StepStatus.WAITING.value)


@router.post("/tasks/{task_id}/signals/{signal}", status_code=202)
async def send_signal(
    task_id: str, signal: str, request: Request, caller: Caller, d: Deps,
    signal_id: Annotated[str | None, Header(alias="Signal-Id", min_length=1,
                                            max_length=200)] = None,
) -> dict[str, Any]:
    body = await request.body()
    return await run_in_threadpool(_send, d, caller, task_id, signal, signal_id, body)


def _send(d: ApiDependencies, caller: Principal, task_id: str, signal: str,
          signal_id: str | None, body: bytes) -> dict[str, Any]:
    row, definition = authorized_task(d, caller, task_id, Action.SIGNAL)
    waits = sorted(s.name for s in definition.steps if s.signal is not None)
    if signal not in waits:
        raise HTTPException(404, f"task type {row.task_type!r} has no wait_for step "
                                 f"{signal!r}; its wait_for steps are {waits}")
    data_json = _validated(definition.get_step(signal), body)
    # Without an id every request is a new signal; the first one the step takes wins.
    signal_id = signal_id or uuid.uuid4().hex
    answer = {"task_id": task_id, "signal": signal, "signal_id": signal_id,
              "status_url": f"/tasks/{task_id}"}
    line = signal_line(signal, signal_id)
    if any(seen.startswith(line) for seen in d.queries.signal_lines(task_id, signal)):
        return {**answer, "status": "already_received"}
    if row.status != ACCEPTED and TaskStatus(row.status) is not TaskStatus.RUNNING:
        raise HTTPException(409, f"task {task_id} is {row.status}: nothing waits for signal "
                                 f"{signal!r} any more")
    step_status = d.queries.step_status(task_id, signal)
    if step_status not in _TAKES_SIGNAL:
        raise HTTPException(409, f"step {signal} of task {task_id} is {step_status}: it no "
                                 "longer waits for a signal")
    d.submit_gate.check()
    d.send_command(msg.SendSignal(task_id, signal, signal_id, data_json, now_ms(),
                                  caller.subject), f"signal:{task_id}:{signal}:{signal_id}")
    return {**answer, "status": "signal accepted"}


def _validated(step: StepDef, body: bytes) -> str:
    """The body as the step's data model dumps it; 422 with the field errors otherwise."""
    if step.data_type is None:
        if body.strip() not in (b"", b"{}"):
            raise HTTPException(422, f"wait_for step {step.name} declares no data: send an "
                                     "empty body or {}")
        return "{}"
    try:
        return step.data_type.model_validate_json(body or b"{}").model_dump_json()
    except ValidationError as error:
        raise HTTPException(422, {"message": f"the signal body is not a valid "
                                             f"{step.data_type.__name__}",
                                  "errors": json.loads(error.json(include_url=False))}) from None

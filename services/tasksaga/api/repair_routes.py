"""Operator repair over HTTP (docs/operations.md, "Operator repair"): skip a failed
compensation, resolve, redrive — each a command the orchestrator records as an event — and,
from the modules this router includes, dead letters and the orphan sweep.

Every route needs the caller to be allowed to operate (the operator role, or the roles the
task type names for ``operate``) and stays inside the caller's tenant; a task the caller may
not see answers 404 like a missing one. A task whose state does not allow the repair answers
409 saying what state it is in and what the repair needs.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tasksaga.adapters.clock import now_ms
from tasksaga.api.dead_letter_routes import router as dead_letter_router
from tasksaga.api.dependencies import Deps
from tasksaga.api.orphan_routes import router as orphan_router
from tasksaga.api.security import Caller
from tasksaga.api.task_access import authorized_task
from tasksaga.core import messages as msg
from tasksaga.core.authorization import Action
from tasksaga.core.repair import REDRIVABLE, RESOLVABLE, SKIPPABLE

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class RepairRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason = Field(description="why: recorded in the task's audit trail")


class SkipRequest(RepairRequest):
    step: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="the step whose compensation failed for good")


def _names(statuses: frozenset[Any]) -> str:
    return " or ".join(sorted(s.value for s in statuses))


router = APIRouter(tags=["operator repair"])


def _accepted(task_id: str, what: str) -> dict[str, Any]:
    return {"task_id": task_id, "status": f"{what} requested",
            "status_url": f"/tasks/{task_id}", "audit_url": f"/tasks/{task_id}/audit"}


@router.post("/tasks/{task_id}/skip-compensation", status_code=202)
def skip_compensation(task_id: str, body: SkipRequest, caller: Caller,
                      d: Deps) -> dict[str, Any]:
    """Leave the step's effect in place and go on compensating the steps before it."""
    row, definition = authorized_task(d, caller, task_id, Action.OPERATE)
    if row.status not in {s.value for s in SKIPPABLE}:
        raise HTTPException(409, f"task {task_id} is {row.status}; only a task in "
                                 f"{_names(SKIPPABLE)} can skip a compensation")
    if not definition.has_step(body.step):
        raise HTTPException(409, f"task type {row.task_type} has no step {body.step!r}")
    step_status = d.queries.step_status(task_id, body.step)
    if step_status != "CompensationFailed":
        raise HTTPException(409, f"the compensation of step {body.step} did not fail (it is "
                                 f"{step_status or 'not run'}); the failed one is "
                                 f"{row.failed_step or 'unknown'}")
    d.submit_gate.check()
    d.send_command(msg.SkipCompensation(task_id, body.step, body.reason, caller.subject,
                                        now_ms()),
                   f"skip-compensation:{task_id}:{row.version}:{body.step}")
    return _accepted(task_id, f"skip of the compensation of {body.step}")


@router.post("/tasks/{task_id}/resolve", status_code=202)
def resolve(task_id: str, body: RepairRequest, caller: Caller, d: Deps) -> dict[str, Any]:
    """End a task that waits for an operator as Resolved: what was left was fixed by hand."""
    row, _ = authorized_task(d, caller, task_id, Action.OPERATE)
    if row.status not in {s.value for s in RESOLVABLE}:
        raise HTTPException(409, f"task {task_id} is {row.status}; only a task in "
                                 f"{_names(RESOLVABLE)} can be marked resolved")
    d.submit_gate.check()
    d.send_command(msg.ResolveTask(task_id, body.reason, caller.subject, now_ms()),
                   f"resolve:{task_id}:{row.version}")
    return _accepted(task_id, "resolve")


@router.post("/tasks/{task_id}/redrive", status_code=202)
def redrive(task_id: str, body: RepairRequest, caller: Caller, d: Deps) -> dict[str, Any]:
    """Resend the commands of the task's steps in flight (harmless if they were not lost)."""
    row, _ = authorized_task(d, caller, task_id, Action.OPERATE)
    if row.status not in {s.value for s in REDRIVABLE}:
        raise HTTPException(409, f"task {task_id} is {row.status}; only a task in "
                                 f"{_names(REDRIVABLE)} has commands in flight to resend")
    d.submit_gate.check()
    d.send_command(msg.RedriveTask(task_id, body.reason, caller.subject, now_ms()),
                   f"redrive:{task_id}:{row.version}")
    return _accepted(task_id, "redrive")


router.include_router(dead_letter_router)
router.include_router(orphan_router)

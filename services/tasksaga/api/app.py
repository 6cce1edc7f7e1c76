"""The HTTP API: submit, list, status, audit, cancel, operator actions. It owns no task state;
it reads projections and sends commands. Every route but the health probes needs a caller
(``Caller``) and asks the authorization handler before acting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException

from tasksaga.adapters.clock import now_ms
from tasksaga.api import submission as sub
from tasksaga.api.archive_routes import add_archive_routes
from tasksaga.api.body_limits import BodyLimits, BodyTimeout, BodyTooLarge
from tasksaga.api.capability_status import with_capability_waits
from tasksaga.api.dependencies import ApiDependencies, Deps
from tasksaga.api.live.routes import register_live_routes
from tasksaga.api.migrate_route import add_migrate_route
from tasksaga.api.queries import ACCEPTED, TaskFilter, TaskRow
from tasksaga.api.repair_routes import router as repair_router
from tasksaga.api.security import Caller
from tasksaga.api.signal_route import router as signal_router
from tasksaga.api.submit_route import Listen, submit_task
from tasksaga.api.task_access import authorized_task
from tasksaga.api.ui import register_dashboard
from tasksaga.api.url_text import RefuseNul
from tasksaga.core import messages as msg
from tasksaga.core.authorization import Action, Principal
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.registry import UnknownTaskType
from tasksaga.core.state import TERMINAL_STATUSES, TaskStatus

log = logging.getLogger(__name__)


def create_app(deps: ApiDependencies) -> FastAPI:
    # The document is served behind authentication like every other route (below).
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The live feed hands messages to this loop: it starts with it.
        if deps.live is not None:
            deps.live.feed.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            if deps.live is not None:
                await run_in_threadpool(deps.live.feed.stop)

    app = FastAPI(title="tasksaga API", version="0.2.0", openapi_url=None, docs_url=None,
                  redoc_url=None, lifespan=lifespan)
    app.state.deps = deps
    app.state.security = deps.security
    app.add_middleware(BodyLimits, limits=deps.limits)
    app.add_middleware(RefuseNul)
    _error_handlers(app)
    app.include_router(signal_router)
    add_migrate_route(app)
    app.include_router(repair_router)
    add_archive_routes(app)

    def definition_of(task_type: str) -> TaskDefinition:
        try:
            return deps.registry.get(task_type)
        except UnknownTaskType as error:
            raise HTTPException(404, str(error)) from error

    def visible_task(task_id: str, caller: Principal, action: Action) -> TaskRow:
        """The task if the caller may take ``action`` on it; 404 alike for missing and hidden."""
        return authorized_task(deps, caller, task_id, action)[0]

    def readable_types(caller: Principal) -> list[str]:
        return task_filter(deps, caller, Action.READ).task_types

    @app.get("/task-types")
    def task_types(caller: Caller, d: Deps) -> dict[str, Any]:
        return {"task_types": [
            {"name": t.name, "queue": t.queue, "cancellable": t.cancellable,
             "steps": [{"name": s.name, "order": s.order, "placement": s.placement.value}
                       for s in t.steps],
             "file_fields": sorted(sub.file_fields(t))}
            for t in d.registry if t.name in readable_types(caller)
        ]}

    @app.post("/tasks/{task_type}", status_code=202)
    async def submit(
        task_type: str, request: Request, caller: Caller, d: Deps,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key",
                                                      max_length=256)] = None,
        callback_url: Annotated[str | None, Query(max_length=2048)] = None,
        listen: Annotated[Listen | None, Query(
            description="how you will follow the task: polling, sse, websocket or webhook "
                        "(needs callback_url); the 202's listen_url is the URL to use")] = None,
    ) -> JSONResponse:
        return await submit_task(d, caller, definition_of(task_type), request,
                                 idempotency_key, callback_url, listen)

    @app.get("/tasks")
    def list_tasks(
        d: Deps, where: ReadableFilter,
        limit: Annotated[int, Query(ge=1)] = 50,
        before: Annotated[str | None, Query(max_length=200,
                                            description="next_cursor of the previous page")
                          ] = None,
    ) -> dict[str, Any]:
        """The caller's tenant's tasks, newest first, filtered by type, status (repeatable),
        submitted-time range and Idempotency-Key; ``limit`` is capped by the server."""
        page = min(limit, d.max_page_size)
        cursor = _parse_cursor(before) if before else None
        tasks = d.queries.list_tasks(where, page, cursor)
        next_cursor = (f"{tasks[-1]['submitted_at']}|{tasks[-1]['task_id']}"
                       if len(tasks) == page else None)
        return {"tasks": tasks, "limit": page, "next_cursor": next_cursor}

    @app.post("/bulk/cancel")
    def bulk_cancel(
        caller: Caller, d: Deps,
        task_type: Annotated[str | None, Query(max_length=200)] = None,
        submitted_after: datetime | None = None,
        submitted_before: datetime | None = None,
        dry_run: bool = True,
        reason: Annotated[str, Query(max_length=500)] = "cancelled in bulk",
    ) -> dict[str, Any]:
        """Cancel the caller's running tasks that match, at most a page of
        ``max_page_size * 10`` per call; ``dry_run`` (the default) only counts them."""
        where = task_filter(d, caller, Action.CANCEL, task_type, list(_CANCELLABLE),
                            submitted_after, submitted_before)
        where = TaskFilter(where.tenant, [t for t in where.task_types
                                          if d.registry.get(t).cancellable],
                           where.statuses, where.submitted_after, where.submitted_before)
        matched = d.queries.count_tasks(where)
        if dry_run:
            return {"matched": matched, "dry_run": True}
        d.submit_gate.check()
        tasks = d.queries.list_tasks(where, d.max_page_size * 10)
        for task in tasks:
            d.send_command(msg.CancelTask(task["task_id"], f"{reason} (by {caller.subject})",
                                          now_ms()), f"cancel:{task['task_id']}")
        return {"matched": matched, "cancel_requested": len(tasks),
                "remaining": matched - len(tasks), "dry_run": False}

    @app.get("/tasks/{task_id}")
    def status(task_id: str, caller: Caller, d: Deps) -> dict[str, Any]:
        row = visible_task(task_id, caller, Action.READ)
        definition = d.registry.get(row.task_type)
        return with_capability_waits(d.queries.status_document(row, definition), definition,
                                     d.capable_workers)

    @app.get("/tasks/{task_id}/audit")
    def audit(
        task_id: str, caller: Caller, d: Deps,
        after_version: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1)] = 1000,
    ) -> dict[str, Any]:
        visible_task(task_id, caller, Action.READ)
        archive = d.queries.archive(task_id)
        if archive is not None and archive.restored_at is None:
            raise HTTPException(409, f"task {task_id} is archived at {archive.location}; "
                                     f"restore it (tasksaga archive restore {task_id}) to "
                                     "read its audit")
        page = min(limit, d.max_page_size * 10)
        entries = d.queries.audit(task_id, after_version, page)
        return {"task_id": task_id, "entries": entries, "limit": page,
                "next_after_version": entries[-1]["version"] if len(entries) == page else None}

    @app.post("/tasks/{task_id}/cancel", status_code=202)
    def cancel(
        task_id: str, caller: Caller, d: Deps,
        reason: Annotated[str, Query(max_length=500)] = "cancelled by request",
    ) -> dict[str, Any]:
        row = visible_task(task_id, caller, Action.CANCEL)
        definition = definition_of(row.task_type)
        if not definition.cancellable:
            raise HTTPException(409, f"task type {row.task_type!r} is not cancellable")
        # An Accepted task is cancelled like a running one: the command follows its
        # SubmitTask on the same partition, so the orchestrator sees them in that order.
        if row.status != ACCEPTED and TaskStatus(row.status) in TERMINAL_STATUSES:
            raise HTTPException(409, f"task {task_id} already ended: {row.status}")
        if row.status != ACCEPTED and TaskStatus(row.status) is TaskStatus.COMPENSATING:
            raise HTTPException(409, f"task {task_id} is already compensating")
        pivot = next((s.name for s in definition.pivots()), None)
        if (pivot is not None and row.status != ACCEPTED
                and d.queries.step_status(task_id, pivot) == "Completed"):
            # A projection that lags lets the command through; the orchestrator refuses it
            # then (CancellationRefused in the audit).
            raise HTTPException(409, f"task {task_id} passed its point of no return (pivot step "
                                     f"{pivot} completed): it only goes forward and cannot be "
                                     "cancelled")
        d.submit_gate.check()
        d.send_command(msg.CancelTask(task_id, f"{reason} (by {caller.subject})", now_ms()),
                       f"cancel:{task_id}")
        return {"task_id": task_id, "status": "cancellation requested",
                "status_url": f"/tasks/{task_id}"}

    @app.post("/tasks/{task_id}/retry-compensation", status_code=202)
    def retry_compensation(task_id: str, caller: Caller, d: Deps) -> dict[str, Any]:
        row = visible_task(task_id, caller, Action.OPERATE)
        if row.status != TaskStatus.COMPENSATION_FAILED:
            raise HTTPException(409, f"task {task_id} is {row.status}; only a task in "
                                     "CompensationFailed can retry its compensation")
        d.submit_gate.check()
        d.send_command(msg.RetryCompensation(task_id, now_ms()),
                       f"retry-compensation:{task_id}:{row.version}")
        return {"task_id": task_id, "status": "compensation retry requested",
                "status_url": f"/tasks/{task_id}"}

    @app.post("/tasks/{task_id}/retry-forward", status_code=202)
    def retry_forward(task_id: str, caller: Caller, d: Deps) -> dict[str, Any]:
        row = visible_task(task_id, caller, Action.OPERATE)
        if row.status != TaskStatus.NEEDS_ATTENTION:
            raise HTTPException(409, f"task {task_id} is {row.status}; only a task in "
                                     "NeedsAttention can retry forward")
        d.submit_gate.check()
        d.send_command(msg.RetryForward(task_id, now_ms()),
                       f"retry-forward:{task_id}:{row.version}")
        return {"task_id": task_id, "status": "forward retry requested",
                "status_url": f"/tasks/{task_id}"}

    register_live_routes(app, visible_task)
    register_dashboard(app)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_document(caller: Caller) -> dict[str, Any]:
        return app.openapi()

    @app.get("/whoami")
    def whoami(caller: Caller) -> dict[str, Any]:
        return {"subject": caller.subject, "tenant": caller.tenant,
                "roles": sorted(caller.roles), "kind": caller.kind}

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        # Async and dependency-free: answers even when every worker thread is busy.
        return {"status": "live"}

    @app.get("/health/ready")
    async def ready(d: Deps) -> JSONResponse:
        checks = await run_in_threadpool(d.readiness) if d.readiness else {}
        failing = {name: state for name, state in checks.items() if state != "ok"}
        body: dict[str, Any] = {"status": "not ready" if failing else "ready",
                                "checks": checks}
        if "postgres" not in failing:
            # How stale statuses may be: reported, not a reason to take this replica out.
            lag = await run_in_threadpool(d.queries.projection_lag)
            body["projection_lag"] = {"seconds": round(lag.seconds, 3), "events": lag.events}
        return JSONResponse(status_code=503 if failing else 200, content=body)

    return app


_CANCELLABLE = (TaskStatus.RUNNING.value,)


def task_filter(d: ApiDependencies, caller: Principal, action: Action,
                task_type: str | None = None, statuses: list[str] | None = None,
                submitted_after: datetime | None = None,
                submitted_before: datetime | None = None,
                idempotency_key: str | None = None) -> TaskFilter:
    """The caller's tenant, and only the types it may take ``action`` on."""
    types = [t.name for t in d.registry
             if d.security.authorization.allows(caller, action, t.name, t.roles, None)
             and (task_type is None or t.name == task_type)]
    return TaskFilter(caller.tenant, types, statuses, submitted_after, submitted_before,
                      idempotency_key)


def readable_filter(
    caller: Caller, d: Deps,
    task_type: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[list[TaskStatus] | None, Query(max_length=len(TaskStatus))] = None,
    submitted_after: datetime | None = None,
    submitted_before: datetime | None = None,
    idempotency_key: Annotated[str | None, Query(max_length=256)] = None,
) -> TaskFilter:
    statuses = None if status is None else [s.value for s in status]
    return task_filter(d, caller, Action.READ, task_type, statuses, submitted_after,
                       submitted_before, idempotency_key)


ReadableFilter = Annotated[TaskFilter, Depends(readable_filter)]


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    stamp, _, task_id = cursor.partition("|")
    try:
        return datetime.fromisoformat(stamp), task_id
    except ValueError as error:
        raise HTTPException(422, "before must be the next_cursor of a previous page") from error


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(sub.SubmissionError)
    async def submission_error(_request: Request, error: sub.SubmissionError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(error),
                                                      "errors": error.errors})

    @app.exception_handler(RequestValidationError)
    async def invalid_parameters(_request: Request, error: RequestValidationError
                                 ) -> JSONResponse:
        # Name the field and the problem, never echo the submitted value.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""),
                   "type": e.get("type", "")} for e in error.errors()]
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in errors)
        return JSONResponse(status_code=422, content={"detail": problems, "errors": errors})

    @app.exception_handler(BodyTooLarge)
    async def too_large(_request: Request, error: BodyTooLarge) -> JSONResponse:
        log.info("refused a body over %d bytes after reading %d", error.limit, error.received)
        return JSONResponse(status_code=413, content={"detail": str(error)},
                            headers={"Connection": "close"})

    @app.exception_handler(BodyTimeout)
    async def too_slow(_request: Request, error: BodyTimeout) -> JSONResponse:
        return JSONResponse(status_code=408, content={"detail": str(error)},
                            headers={"Connection": "close"})

    @app.exception_handler(MultiPartException)
    async def bad_multipart(_request: Request, error: MultiPartException) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": f"invalid multipart body: "
                                                                f"{error.message}"})

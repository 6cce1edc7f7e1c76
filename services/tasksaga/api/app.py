"""The HTTP API: submit, status, audit, cancel. It owns no state; it reads projections and
sends commands."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.clock import now_ms
from tasksaga.adapters.kafka_bus import KafkaProducer
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.api import submission as sub
from tasksaga.api.api_steps import run_api_steps
from tasksaga.api.queries import ProjectionQueries
from tasksaga.core import messages as msg
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.ports import ObjectStore
from tasksaga.core.registry import TaskRegistry, UnknownTaskType
from tasksaga.core.state import TERMINAL_STATUSES, TaskStatus

log = logging.getLogger(__name__)


@dataclass
class ApiDependencies:
    registry: TaskRegistry
    queries: ProjectionQueries
    producer: KafkaProducer
    codec: AvroCodec
    topics: Topics
    objects: ObjectStore
    max_files: int = 100

    def send_command(self, command: msg.TaskCommand, message_id: str) -> None:
        """Durable in Kafka (acks=all, flushed) before the API answers 202."""
        self.producer.send_envelope(
            self.codec,
            self.topics.task_commands,
            Envelope(payload=command, message_id=message_id, task_id=command.task_id,
                     correlation_id=command.task_id, causation_id=None,
                     occurred_at_ms=now_ms()),
        )


def get_deps(request: Request) -> ApiDependencies:
    deps: ApiDependencies = request.app.state.deps
    return deps


Deps = Annotated[ApiDependencies, Depends(get_deps)]


def create_app(deps: ApiDependencies) -> FastAPI:
    app = FastAPI(title="tasksaga API", version="0.1.0")
    app.state.deps = deps

    def definition_of(task_type: str) -> TaskDefinition:
        try:
            return deps.registry.get(task_type)
        except UnknownTaskType as error:
            raise HTTPException(404, str(error)) from error

    @app.exception_handler(sub.SubmissionError)
    async def submission_error(_request: Request, error: sub.SubmissionError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(error),
                                                      "errors": error.errors})

    @app.get("/task-types")
    def task_types(d: Deps) -> dict[str, Any]:
        return {"task_types": [
            {"name": t.name, "queue": t.queue, "cancellable": t.cancellable,
             "steps": [{"name": s.name, "order": s.order, "placement": s.placement.value}
                       for s in t.steps],
             "file_fields": sorted(sub.file_fields(t))}
            for t in d.registry
        ]}

    @app.post("/tasks/{task_type}", status_code=202)
    async def submit(
        task_type: str,
        request: Request,
        d: Deps,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
        callback_url: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> JSONResponse:
        definition = definition_of(task_type)
        if callback_url is not None and not callback_url.startswith(("http://", "https://")):
            raise sub.SubmissionError("callback_url must be an http:// or https:// URL")
        task_id = sub.task_id_for(task_type, idempotency_key)
        existing = await run_in_threadpool(d.queries.task, task_id)
        content_type = request.headers.get("content-type", "")
        api_steps: list[msg.ApiStepResult] = []
        if content_type.startswith("multipart/form-data"):
            form = await request.form(max_files=d.max_files)
            try:
                parts = sub.split_form(definition, form)
                sub.prevalidate(definition, parts)
                if existing is not None:
                    return _accepted(existing.task_id, task_type, existing=True)
                validated, api_steps = await run_in_threadpool(
                    sub.store_files, definition, task_id, parts, d.objects)
            finally:
                await form.close()
        elif content_type.startswith("application/json") or not content_type:
            validated = sub.parse_json_body(definition, await request.body())
        else:
            raise HTTPException(
                415, f"unsupported content type {content_type!r}: send application/json or "
                     "multipart/form-data")
        request_json = validated.model_dump_json()
        if existing is None and definition.api_steps():
            api_steps = await run_in_threadpool(
                run_api_steps, definition, task_id, validated, api_steps, d.objects)
        if existing is not None:
            if existing.request_json != request_json and not api_steps:
                raise HTTPException(
                    409, "this Idempotency-Key was already used with a different request; "
                         "use a new key for a new task")
            return _accepted(existing.task_id, task_type, existing=True)
        command = msg.SubmitTask(
            task_id=task_id, task_type=task_type, request_json=request_json,
            callback_url=callback_url, idempotency_key=idempotency_key,
            submitted_at_ms=now_ms(), api_steps=api_steps,
        )
        await run_in_threadpool(d.send_command, command, f"submit:{task_id}")
        return _accepted(task_id, task_type, existing=False)

    @app.get("/tasks/{task_id}")
    def status(task_id: str, d: Deps) -> dict[str, Any]:
        row = d.queries.task(task_id)
        if row is None:
            raise HTTPException(404, f"no task {task_id} (a task accepted a moment ago "
                                     "appears within a second; retry)")
        definition = None
        with contextlib.suppress(UnknownTaskType):
            definition = d.registry.get(row.task_type)
        return d.queries.status_document(row, definition)

    @app.get("/tasks/{task_id}/audit")
    def audit(task_id: str, d: Deps) -> dict[str, Any]:
        if d.queries.task(task_id) is None:
            raise HTTPException(404, f"no task {task_id}")
        return {"task_id": task_id, "entries": d.queries.audit(task_id)}

    @app.post("/tasks/{task_id}/cancel", status_code=202)
    def cancel(task_id: str, d: Deps, reason: str = "cancelled by request") -> dict[str, Any]:
        row = d.queries.task(task_id)
        if row is None:
            raise HTTPException(404, f"no task {task_id}")
        definition = definition_of(row.task_type)
        if not definition.cancellable:
            raise HTTPException(409, f"task type {row.task_type!r} is not cancellable")
        if TaskStatus(row.status) in TERMINAL_STATUSES:
            raise HTTPException(409, f"task {task_id} already ended: {row.status}")
        if TaskStatus(row.status) is TaskStatus.COMPENSATING:
            raise HTTPException(409, f"task {task_id} is already compensating")
        d.send_command(msg.CancelTask(task_id, reason, now_ms()), f"cancel:{task_id}")
        return {"task_id": task_id, "status": "cancellation requested",
                "status_url": f"/tasks/{task_id}"}

    @app.post("/tasks/{task_id}/retry-compensation", status_code=202)
    def retry_compensation(task_id: str, d: Deps) -> dict[str, Any]:
        row = d.queries.task(task_id)
        if row is None:
            raise HTTPException(404, f"no task {task_id}")
        if TaskStatus(row.status) is not TaskStatus.COMPENSATION_FAILED:
            raise HTTPException(409, f"task {task_id} is {row.status}; only a task in "
                                     "CompensationFailed can retry its compensation")
        d.send_command(msg.RetryCompensation(task_id, now_ms()),
                       f"retry-compensation:{task_id}:{row.version}")
        return {"task_id": task_id, "status": "compensation retry requested",
                "status_url": f"/tasks/{task_id}"}

    @app.get("/health/live")
    def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/health/ready")
    def ready(d: Deps) -> dict[str, str]:
        try:
            d.queries.ready()
        except Exception as error:
            raise HTTPException(503, f"database not ready: {error}") from error
        return {"status": "ready"}

    return app


def _accepted(task_id: str, task_type: str, existing: bool) -> JSONResponse:
    body = {
        "task_id": task_id,
        "task_type": task_type,
        "status_url": f"/tasks/{task_id}",
        "audit_url": f"/tasks/{task_id}/audit",
        "cancel_url": f"/tasks/{task_id}/cancel",
        "already_submitted": existing,
    }
    return JSONResponse(status_code=202, content=body,
                        headers={"Location": f"/tasks/{task_id}"})


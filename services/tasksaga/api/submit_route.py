"""``POST /tasks/{task_type}``: authorize, vet, read the bounded body, store files, send.

Order matters: the caller is authenticated and authorized for the type before a byte of the
body is read; the callback URL is vetted before any upload; a submission refused after its
uploads (a failing API step, Kafka unavailable) removes what it stored.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from tasksaga.adapters.clock import now_ms
from tasksaga.api import submission as sub
from tasksaga.api.api_steps import run_api_steps, undo_api_steps
from tasksaga.api.body_limits import parse_form
from tasksaga.api.dependencies import ApiDependencies, SubmitUnavailable
from tasksaga.core import messages as msg
from tasksaga.core.authorization import Action, Principal
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.request_fields import outbound_urls

log = logging.getLogger(__name__)


class Listen(StrEnum):
    """How the client will follow the task; the 202 names the URL to use (``listen_url``)."""

    POLLING = "polling"  # GET status_url
    SSE = "sse"  # GET events_url, Server-Sent Events
    WEBSOCKET = "websocket"  # ws_url
    WEBHOOK = "webhook"  # the notifier POSTs to callback_url


def listening(listen: Listen | None, callback_url: str | None) -> Listen:
    """The strategy asked for; webhook when only a callback URL is given, else polling."""
    if listen is None:
        return Listen.WEBHOOK if callback_url is not None else Listen.POLLING
    if listen is Listen.WEBHOOK and callback_url is None:
        raise sub.SubmissionError("listen=webhook needs a callback_url", [
            {"loc": ["query", "callback_url"], "msg": "required with listen=webhook",
             "type": "missing"}])
    return listen


async def submit_task(
    d: ApiDependencies, caller: Principal, definition: TaskDefinition, request: Request,
    idempotency_key: str | None, callback_url: str | None, listen: Listen | None = None,
) -> JSONResponse:
    task_type = definition.name
    strategy = listening(listen, callback_url)
    d.security.require(caller, Action.SUBMIT, task_type, definition.roles)
    if callback_url is not None:
        problem = await run_in_threadpool(d.url_guard.problem, callback_url)
        if problem is not None:
            raise sub.SubmissionError(f"callback_url refused: {problem}",
                                      [{"loc": ["query", "callback_url"], "msg": problem,
                                        "type": "unsafe_url"}])
    d.submit_gate.check()
    task_id = sub.task_id_for(d.task_id_secret, caller.tenant, task_type, idempotency_key)
    existing = await run_in_threadpool(d.queries.task, task_id)
    content_type = request.headers.get("content-type", "")
    api_steps: list[msg.ApiStepResult] = []
    if content_type.startswith("multipart/form-data"):
        form = await parse_form(request.headers, request.stream(), d.limits, d.max_files)
        try:
            parts = sub.split_form(definition, form)
            sub.prevalidate(definition, parts)
            await _vet_urls(d, definition, parts.values)  # before a byte is uploaded
            if existing is not None:
                return accepted(existing.task_id, task_type, existing=True, listen=strategy)
            validated, api_steps = await run_in_threadpool(
                sub.store_files, definition, task_id, parts, d.objects, caller.tenant,
                d.artifacts)
        finally:
            await form.close()
    elif content_type.startswith("application/json") or not content_type:
        validated = sub.parse_json_body(definition, await request.body())
    else:
        raise HTTPException(
            415, f"unsupported content type {content_type!r}: send application/json or "
                 "multipart/form-data")
    await _vet_urls(d, definition, validated.model_dump())
    request_json = validated.model_dump_json()
    if existing is None and definition.api_steps():
        api_steps = await run_in_threadpool(
            run_api_steps, definition, task_id, validated, api_steps, d.objects,
            d.artifacts)
    if existing is not None:
        if existing.request_json != request_json and not api_steps:
            raise HTTPException(
                409, "this Idempotency-Key was already used with a different request; "
                     "use a new key for a new task")
        return accepted(existing.task_id, task_type, existing=True, listen=strategy)
    command = msg.SubmitTask(
        task_id=task_id, task_type=task_type, request_json=request_json,
        callback_url=callback_url, idempotency_key=idempotency_key,
        submitted_at_ms=now_ms(), api_steps=api_steps, tenant=caller.tenant,
        submitted_by=caller.subject, definition_version=definition.version,
    )
    try:
        await run_in_threadpool(d.send_command, command, f"submit:{task_id}")
    except SubmitUnavailable:
        await _forget_uploads(definition, task_id, validated, api_steps, d)
        raise
    try:
        await run_in_threadpool(d.queries.mark_accepted, task_id, caller.tenant, task_type,
                                caller.subject, request_json)
    except Exception:
        # The command is in Kafka: the task is accepted, only visible a moment later.
        log.exception("could not record task %s as accepted", task_id)
    return accepted(task_id, task_type, existing=False, listen=strategy)


async def _vet_urls(d: ApiDependencies, definition: TaskDefinition,
                    values: dict[str, Any]) -> None:
    """Request fields declared as ``CallbackUrl`` pass the SSRF guard like ``callback_url``."""
    for field_name, url in outbound_urls(definition.request_type, values):
        problem = await run_in_threadpool(d.url_guard.problem, url)
        if problem is not None:
            raise sub.SubmissionError(f"{field_name} refused: {problem}",
                                      [{"loc": ["body", field_name], "msg": problem,
                                        "type": "unsafe_url"}])


async def _forget_uploads(definition: TaskDefinition, task_id: str, validated: BaseModel,
                          done: list[msg.ApiStepResult], d: ApiDependencies) -> None:
    """Nothing was accepted, so nothing the submission stored may stay behind."""
    if done:
        await run_in_threadpool(undo_api_steps, definition, task_id, validated, done,
                                d.objects, d.artifacts)


def accepted(task_id: str, task_type: str, existing: bool,
             listen: Listen = Listen.POLLING) -> JSONResponse:
    urls = {
        Listen.POLLING: f"/tasks/{task_id}",
        Listen.SSE: f"/tasks/{task_id}/events",
        Listen.WEBSOCKET: f"/tasks/{task_id}/ws",
    }
    body: dict[str, Any] = {
        "task_id": task_id,
        "task_type": task_type,
        "status_url": urls[Listen.POLLING],
        "audit_url": f"/tasks/{task_id}/audit",
        "cancel_url": f"/tasks/{task_id}/cancel",
        "events_url": urls[Listen.SSE],
        "ws_url": urls[Listen.WEBSOCKET],
        "stream_ticket_url": f"/tasks/{task_id}/stream-ticket",
        "listen": listen.value,
        # What to follow: the status to poll, the SSE or WebSocket stream; with a webhook,
        # nothing (the notifier calls back), though the others still work.
        "listen_url": urls.get(listen),
        "already_submitted": existing,
    }
    return JSONResponse(status_code=202, content=body,
                        headers={"Location": f"/tasks/{task_id}"})

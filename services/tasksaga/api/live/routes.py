"""``GET /tasks/{id}/events`` (SSE), ``/tasks/{id}/ws`` (WebSocket) and stream tickets.

A stream is authorized exactly like ``GET /tasks/{id}``: the same caller (bearer token, API
key, or a stream ticket standing for one), the same READ check, and 404 alike for a missing
task and another tenant's. Both endpoints send the same JSON messages (messages.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Header, HTTPException, Query, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from tasksaga.api.dependencies import ApiDependencies, Deps
from tasksaga.api.live.feed import FeedUnavailable, LiveFeed
from tasksaga.api.live.hub import LiveHub, TooManyWatchers
from tasksaga.api.live.messages import (
    DROPPED,
    BadResumePoint,
    resume_after,
    sse_comment,
    sse_frame,
    sse_retry,
    to_json,
)
from tasksaga.api.live.session import EventLog, LiveSession
from tasksaga.api.live.tickets import BadTicket, TicketSigner
from tasksaga.api.security import Caller, Unauthenticated
from tasksaga.core.authorization import Action, Principal

log = logging.getLogger(__name__)

Visible = Callable[[str, Principal, Action], object]
# An EventSource waits this long before it reconnects after a dropped connection.
RECONNECT_MS = 2000


@dataclass
class LiveService:
    hub: LiveHub
    feed: LiveFeed
    log: EventLog
    tickets: TicketSigner
    keepalive_s: float = 15.0


def events_url(task_id: str) -> str:
    return f"/tasks/{task_id}/events"


def ws_url(task_id: str) -> str:
    return f"/tasks/{task_id}/ws"


def _service(d: ApiDependencies) -> LiveService:
    live: LiveService | None = d.live
    if live is None:
        raise HTTPException(404, "live progress is not enabled on this API")
    return live


def _require_ready(live: LiveService) -> None:
    if not live.feed.ready:
        raise HTTPException(503, "live progress is not available yet: the event feed is "
                                 "starting or stopped; retry shortly",
                            headers={"Retry-After": "2"})


async def _stream_caller(d: ApiDependencies, live: LiveService, task_id: str,
                         headers: Any, ticket: str | None, now_s: float) -> Principal:
    """The header's credentials when there are any; else the ticket's identity."""
    authorization, api_key = headers.get("authorization"), headers.get("x-api-key")
    if ticket and not (authorization or api_key):
        try:
            principal = live.tickets.verify(ticket, task_id, now_s)
        except BadTicket as error:
            raise Unauthenticated(str(error)) from error
    else:
        principal = await run_in_threadpool(d.security.authenticate, authorization, api_key)
    await run_in_threadpool(d.security.count, principal)
    return principal


async def _open(d: ApiDependencies, visible: Visible, task_id: str, headers: Any,
                ticket: str | None, last_event_id: str | None,
                after_version: int | None) -> LiveSession:
    """Authenticate, authorize (404 alike for missing and hidden), then subscribe and read."""
    live = _service(d)
    caller = await _stream_caller(d, live, task_id, headers, ticket, d.security.clock_s())
    await run_in_threadpool(visible, task_id, caller, Action.READ)
    _require_ready(live)
    try:
        after = resume_after(last_event_id, after_version)
    except BadResumePoint as error:
        raise HTTPException(422, str(error)) from error
    session = LiveSession(live.hub, live.log, task_id, after, live.keepalive_s,
                          live.feed.follow)
    try:
        await session.open()
    except (TooManyWatchers, FeedUnavailable) as error:
        raise HTTPException(503, str(error), headers={"Retry-After": "5"}) from error
    except BadResumePoint as error:
        raise HTTPException(422, str(error)) from error
    return session


async def _sse(session: LiveSession) -> AsyncIterator[str]:
    try:
        yield sse_retry(RECONNECT_MS)
        async for batch in session.batches():
            # A burst goes out as one write.
            yield "".join(sse_frame(m) for m in batch) if batch else sse_comment("keep-alive")
    finally:
        session.close()


def register_live_routes(app: FastAPI, visible: Visible) -> None:
    @app.get("/tasks/{task_id}/events", response_model=None)
    async def task_events(
        task_id: str, request: Request, d: Deps,
        ticket: Annotated[str | None, Query(max_length=2000,
                                            description="from POST /tasks/{id}/stream-ticket"
                                            )] = None,
        after_version: Annotated[int | None, Query(ge=0)] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID",
                                                    max_length=64)] = None,
    ) -> Response:
        """Server-Sent Events: the task's events from the log after ``Last-Event-ID`` (or
        ``after_version``), then live ones and step progress; ends after the terminal event.
        204 when the stream already ended at the resume point."""
        session = await _open(d, visible, task_id, request.headers, ticket, last_event_id,
                              after_version)
        if session.finished:
            return Response(status_code=204)
        return StreamingResponse(_sse(session), media_type="text/event-stream", headers={
            "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/tasks/{task_id}/stream-ticket")
    def stream_ticket(task_id: str, caller: Caller, d: Deps) -> dict[str, Any]:
        """A short-lived ticket for this task's streams, for clients that cannot send an
        Authorization header (a browser's EventSource or WebSocket)."""
        live = _service(d)
        visible(task_id, caller, Action.READ)
        _require_ready(live)
        ticket = live.tickets.issue(caller, task_id, d.security.clock_s())
        query = f"?ticket={quote(ticket)}"
        return {"ticket": ticket, "expires_in_s": live.tickets.lifetime_s,
                "events_url": events_url(task_id) + query, "ws_url": ws_url(task_id) + query}

    @app.websocket("/tasks/{task_id}/ws")
    async def task_ws(websocket: WebSocket, task_id: str, ticket: str | None = None,
                      after_version: int | None = None) -> None:
        """The same messages as the SSE stream, one JSON text frame each; closes with 1000
        after the terminal event, 1013 when dropped for being too slow."""
        d: ApiDependencies = websocket.app.state.deps
        try:
            session = await _open(d, visible, task_id, websocket.headers, ticket, None,
                                  after_version)
        except HTTPException as error:
            await websocket.send_denial_response(JSONResponse(
                {"detail": error.detail}, error.status_code, headers=error.headers))
            return
        try:
            await websocket.accept()
            if session.finished:
                await websocket.close(1000, "the stream already ended at this version")
                return
            await _pump(websocket, session)
        except WebSocketDisconnect:
            pass
        finally:
            session.close()


async def _pump(websocket: WebSocket, session: LiveSession) -> None:
    # Nothing is expected from the client; reading notices its departure at once.
    gone = asyncio.create_task(_until_disconnect(websocket))
    try:
        async for message in session.messages():
            if gone.done():
                return
            if message is None:
                continue  # the server's WebSocket pings keep the connection alive
            await websocket.send_text(to_json(message))
            if message.kind == DROPPED:
                await websocket.close(1013, "too slow; resume with after_version")
                return
        await websocket.close(1000, "the task ended")
    finally:
        gone.cancel()


async def _until_disconnect(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return

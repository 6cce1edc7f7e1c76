"""``/ui``: the dashboard's pages and assets, its one read (the timeline), and its headers.

The pages are static files with no task data in them: everything a page shows it fetches from
the API with the caller's credentials (``Authorization`` or ``X-API-Key``, kept by the page in
sessionStorage), so the dashboard sees exactly what the caller may see through the API, and
another tenant's task is the same 404. Every ``/ui`` response carries a strict
Content-Security-Policy: scripts and styles from this origin only, no inline code, no
frames, and Trusted Types required, so no HTML string can ever reach the DOM.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasksaga.adapters.clock import now_ms
from tasksaga.api.dependencies import Deps
from tasksaga.api.live.messages import LiveMessage
from tasksaga.api.security import Caller
from tasksaga.api.task_access import authorized_task
from tasksaga.api.ui.timeline import TimelineEvent, build_timeline, lane_specs
from tasksaga.core.authorization import Action

PREFIX = "/ui"
STATIC = resources.files("tasksaga.api.ui") / "static"
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
))
UI_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# A task's timeline reads at most this many events (pages of the live log's size).
MAX_TIMELINE_EVENTS = 5000
_PAGE = 500


class DashboardHeaders:
    """Adds ``UI_HEADERS`` to every response under ``/ui`` (pages, assets, the timeline)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(
                    (name.lower().encode(), value.encode()) for name, value in UI_HEADERS.items()
                    if name.lower().encode() not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


def _page(name: str) -> Response:
    return Response((STATIC / name).read_bytes(), media_type="text/html; charset=utf-8")


def register_dashboard(app: FastAPI) -> None:
    app.add_middleware(DashboardHeaders)

    @app.get(PREFIX, include_in_schema=False)
    def dashboard_root() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    @app.get(f"{PREFIX}/", include_in_schema=False)
    def task_list_page() -> Response:
        return _page("index.html")

    @app.get(f"{PREFIX}/tasks/{{task_id}}", include_in_schema=False)
    def task_page(task_id: Annotated[str, Path(max_length=200)]) -> Response:
        # The id is read by the page from its URL; the server puts nothing of it in the page.
        return _page("task.html")

    @app.get(f"{PREFIX}/api/tasks/{{task_id}}/timeline")
    async def task_timeline(task_id: str, caller: Caller, d: Deps) -> dict[str, Any]:
        """The task's steps as bars over time (attempts, waits, compensations) and marks
        (retries, conditions, skips, signals), authorized like ``GET /tasks/{id}``."""
        _row, definition = await run_in_threadpool(authorized_task, d, caller, task_id,
                                                   Action.READ)
        if d.live is None:
            raise HTTPException(404, "the timeline reads the event log, which this API "
                                     "was started without (live progress is disabled)")
        messages: list[LiveMessage] = []
        while len(messages) < MAX_TIMELINE_EVENTS:
            page = await d.live.log.events_from(task_id, len(messages) + 1, _PAGE)
            messages += page
            if len(page) < _PAGE:
                break
        events = [TimelineEvent.from_message(m.data) for m in messages]
        specs = lane_specs(definition, {e.step for e in events if e.step})
        timeline = build_timeline(specs, events, now_ms())
        timeline["truncated"] = len(messages) >= MAX_TIMELINE_EVENTS
        timeline["cancellable"] = definition.cancellable
        return timeline

    app.mount(f"{PREFIX}/static", StaticFiles(packages=[("tasksaga.api.ui", "static")]),
              name="dashboard-static")

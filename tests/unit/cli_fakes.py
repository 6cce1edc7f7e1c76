"""Running the ``tasksaga`` command in process against a fake API (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from typer.testing import CliRunner, Result

from tasksaga.api.live.messages import end_message, event_message, sse_frame, stored_progress
from tasksaga.cli.app import CliState, app
from tasksaga.cli.profile import CliProfile
from tasksaga.core import events as ev
from tasksaga.core.envelope import Envelope

API = "http://api.test"
TASK = "t-1"

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeApi:
    """Routes ``(method, path)`` to handlers and records every request it was sent."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, path: str, handler: Handler | Any, status: int = 200) -> None:
        if callable(handler):
            self.routes[(method, path)] = handler
        else:
            body = handler
            self.routes[(method, path)] = lambda _r: httpx.Response(status, json=body)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        handler = self.routes.get((request.method, request.url.path))
        if handler is None:
            return httpx.Response(404, json={"detail": f"no route {request.url.path}"})
        return handler(request)

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


def run(api: Handler, *args: str, stdin: str | None = None) -> Result:
    """``tasksaga --url API --token tok ARGS`` with ``api`` answering its requests."""
    runner = CliRunner()
    state = CliState(profile=CliProfile("test", API, "tok"), transport=httpx.MockTransport(api))
    return runner.invoke(app, ["--url", API, "--token", "tok", *args], obj=state,
                         input=stdin, env={"TASKSAGA_CONFIG": "/nonexistent/config.toml",
                                           "COLUMNS": "200"})


def status_document(status: str = "Running", steps: tuple[str, ...] = ("A", "B"),
                    **extra: Any) -> dict[str, Any]:
    return {"task_id": TASK, "task_type": "T", "status": status, "version": 1,
            "submitted_at": "2026-12-02T06:00:00+00:00",
            "updated_at": "2026-12-02T06:00:01+00:00", "request": {}, "response": None,
            "end_reason": None, "failure": None,
            "steps": [{"step": s, "status": "Pending", "attempt": 0} for s in steps],
            "conditions": [], "notifications": [], **extra}


def event_frame(version: int, payload: object) -> str:
    """An SSE frame exactly as the API builds it for an event of the log."""
    return sse_frame(event_message(Envelope(payload, f"{TASK}:{version}", TASK, TASK, None,
                                            1_700_000_000_000 + version, "T", version)))


def progress_frame(step: str, attempt: int, progress: float, message: str) -> str:
    return sse_frame(stored_progress(TASK, step, attempt, progress, message, 1_700_000_000_000))


def end_frame(version: int, payload: object) -> str:
    last = event_message(Envelope(payload, f"{TASK}:{version}", TASK, TASK, None,
                                  1_700_000_000_000 + version, "T", version))
    return sse_frame(end_message(TASK, last))


def completed_run() -> list[str]:
    """The frames of a task whose two steps complete, step A reporting progress."""
    return [event_frame(1, ev.TaskSubmitted(TASK, "T", "{}", None, None, 1, None)),
            event_frame(2, ev.StepDispatched("A", 1, "q", 2, 99)),
            progress_frame("A", 1, 0.5, "half way"),
            event_frame(3, ev.StepCompleted("A", 1, "{}", 3)),
            event_frame(4, ev.StepDispatched("B", 1, "q", 4, 99)),
            event_frame(5, ev.StepCompleted("B", 1, "{}", 5)),
            event_frame(6, ev.TaskCompleted("{}", 6)),
            end_frame(6, ev.TaskCompleted("{}", 6))]


def sse(frames: list[str], retry_ms: int | None = None) -> httpx.Response:
    head = f"retry: {retry_ms}\n\n" if retry_ms is not None else ""
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          content=(head + "".join(frames)).encode())


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]

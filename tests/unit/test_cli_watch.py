"""``tasksaga watch``: per-step progress from the SSE stream, reconnection, exit codes."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tasksaga.cli import exit_codes
from tasksaga.cli.context import CliState
from tasksaga.cli.profile import CliProfile
from tasksaga.cli.sse import SseParser
from tasksaga.cli.watch_command import follow
from tasksaga.cli.watch_view import apply, seed
from tasksaga.core import events as ev
from tests.unit.cli_fakes import (
    TASK,
    FakeApi,
    completed_run,
    end_frame,
    event_frame,
    json_lines,
    run,
    sse,
    status_document,
)

EVENTS = f"/tasks/{TASK}/events"
STATUS = f"/tasks/{TASK}"


def test_the_parser_joins_data_lines_keeps_the_last_id_and_skips_comments() -> None:
    parser = SseParser()
    got = [parser.feed(line) for line in
           ["retry: 2000", "", ": keep-alive", "", "id: 7", "event: event", "data: {\"a\":",
            "data: 1}", "", "event: progress", "data: {}", ""]]
    events = [e for e in got if e is not None]
    assert [(e.event, e.data, e.id) for e in events] == [
        ("event", '{"a":\n1}', "7"), ("progress", "{}", "7")]
    assert parser.retry_ms == 2000


def test_the_view_follows_steps_and_progress_and_ignores_a_late_beat() -> None:
    view = seed(status_document())
    view = apply(view, {"type": "event", "version": 2, "event_type": "StepDispatched",
                        "step": "A", "attempt": 2})
    view = apply(view, {"type": "progress", "step": "A", "attempt": 2, "progress": 0.4,
                        "message": "40%"})
    view = apply(view, {"type": "progress", "step": "A", "attempt": 1, "progress": 0.9})
    step = view.step("A")
    assert step is not None
    assert (step.status, step.attempt, step.fraction, step.message) == ("Running", 2, 0.4, "40%")
    view = apply(view, {"type": "event", "version": 3, "event_type": "StepCompleted",
                        "step": "A", "attempt": 2})
    assert view.step("A") is not None and view.step("A").fraction == 1.0  # type: ignore[union-attr]
    assert view.last_version == 3


def test_watch_exits_0_when_the_task_completes_and_shows_each_step() -> None:
    api = FakeApi()
    api.on("GET", STATUS, status_document("Completed"))
    api.on("GET", EVENTS, lambda _r: sse(completed_run()))
    result = run(api, "watch", TASK)
    assert result.exit_code == exit_codes.OK, result.output
    assert f"task {TASK} ended Completed" in result.output
    # Each event's audit line above the bars, and both steps' bars full at the end.
    assert "step A completed (attempt 1)" in result.output, result.output
    bars = [line for line in result.output.splitlines() if line.startswith(("A ", "B "))]
    assert len(bars) == 2 and all("Completed" in b and "100%" in b for b in bars), bars


def frames_of(frames: list[str]) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: sse(frames)


def test_watch_exit_codes_tell_each_outcome_apart() -> None:
    outcomes: dict[int, object] = {
        exit_codes.FAILED: ev.TaskFailed("boom", 9),
        exit_codes.CANCELLED: ev.TaskCancelled("asked", 9),
        exit_codes.COMPENSATION_FAILED: ev.TaskCompensationFailed("A", "IOError", "undo failed", 9),
        exit_codes.NEEDS_ATTENTION: ev.TaskNeedsAttention("B", "A", "IOError", "no", 9),
    }
    for code, terminal in outcomes.items():
        api = FakeApi()
        api.on("GET", STATUS, status_document(type(terminal).__name__.removeprefix("Task")))
        api.on("GET", EVENTS, frames_of([event_frame(9, terminal), end_frame(9, terminal)]))
        result = run(api, "watch", TASK)
        assert result.exit_code == code, (type(terminal).__name__, result.output)
    assert len(set(outcomes)) == 4 and exit_codes.OK not in outcomes


def test_a_dropped_stream_is_resumed_after_the_last_event_it_delivered() -> None:
    frames = completed_run()
    connections: list[str | None] = []

    def events(request: httpx.Request) -> httpx.Response:
        connections.append(request.headers.get("Last-Event-ID"))
        if len(connections) == 1:
            return sse(frames[:4])  # v1..v3 and a progress, then the connection closes
        return sse(frames[4:])

    api = FakeApi()
    api.on("GET", STATUS, status_document("Completed"))
    api.on("GET", EVENTS, events)
    result = run(api, "watch", TASK, "--reconnect-delay", "0", "--json")
    assert result.exit_code == exit_codes.OK, result.output
    assert connections == [None, "3"]
    versions = [m["version"] for m in json_lines(result.output) if m["type"] == "event"]
    assert versions == [1, 2, 3, 4, 5, 6]


def test_a_connection_error_is_retried_and_a_dropped_message_reconnects() -> None:
    calls: list[str | None] = []

    def events(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("Last-Event-ID"))
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        if len(calls) == 2:
            return sse([event_frame(1, ev.TaskCompleted("{}", 1)),
                'event: dropped\ndata: {"type":"dropped","task_id":"t-1","reason":"slow",'
                '"resume_after":1}\n\n'])
        return httpx.Response(204)  # the stream had ended at version 1

    api = FakeApi()
    api.on("GET", STATUS, status_document("Completed"))
    api.on("GET", EVENTS, events)
    result = run(api, "watch", TASK, "--reconnect-delay", "0")
    assert result.exit_code == exit_codes.OK, result.output
    assert calls == [None, None, "1"]


def test_watch_gives_up_after_max_reconnects_with_its_own_exit_code() -> None:
    api = FakeApi()
    api.on("GET", STATUS, status_document())
    api.on("GET", EVENTS, lambda _r: sse([]))
    result = run(api, "watch", TASK, "--reconnect-delay", "0", "--max-reconnects", "2")
    assert result.exit_code == exit_codes.STREAM_LOST
    assert len(api.sent("GET", EVENTS)) == 3


def test_watching_a_task_you_cannot_see_is_the_apis_404() -> None:
    api = FakeApi()
    api.on("GET", STATUS, {"detail": f"task {TASK} not found"}, status=404)
    result = run(api, "watch", TASK)
    assert result.exit_code == exit_codes.API_ERROR
    assert "404" in result.output and "not found" in result.output


def test_the_outcome_is_the_streams_even_when_the_status_projection_lags() -> None:
    api = FakeApi()
    api.on("GET", STATUS, status_document("Compensating"))  # not caught up with the log
    failed = ev.TaskFailed("boom", 9)
    api.on("GET", EVENTS, frames_of([event_frame(9, failed), end_frame(9, failed)]))
    cli = CliState(CliProfile("test", "http://api.test", None), httpx.MockTransport(api))
    assert follow(cli, TASK, quiet=True, settle_s=0) == exit_codes.FAILED

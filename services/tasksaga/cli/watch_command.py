"""``watch``: follow a task over SSE with one progress bar per step; exit with its outcome.

The stream (``GET /tasks/{id}/events``, docs/live.md) is resumable: when it drops (a
``dropped`` message, a closed connection, a read that times out past the server's
keep-alives), ``watch`` reconnects with ``Last-Event-ID`` set to the last event it applied,
so it neither misses nor repeats one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.text import Text

from tasksaga.cli import exit_codes
from tasksaga.cli.client import checked
from tasksaga.cli.context import CliState, console, state
from tasksaga.cli.output import STATUS_STYLE, status_text
from tasksaga.cli.sse import SseParser
from tasksaga.cli.watch_view import StepView, WatchView, apply, seed

# The server sends a keep-alive after 15 s of silence (TASKSAGA_API_LIVE_KEEPALIVE_S): three
# of them missing means the connection is dead, not quiet.
READ_TIMEOUT_S = 45.0
MAX_RECONNECT_DELAY_S = 10.0

Show = Callable[[WatchView, dict[str, Any]], None]


class StepBars:
    """One rich progress bar per step, updated from the view; event lines printed above."""

    def __init__(self, out: Console, lines: bool) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), TextColumn("{task.fields[status]}"),
            BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[note]}"), console=out)
        self._bars: dict[str, TaskID] = {}
        self._lines = lines
        self._width = 0

    def __enter__(self) -> StepBars:
        self._progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._progress.stop()

    def show(self, view: WatchView, message: dict[str, Any]) -> None:
        if self._lines and message.get("type") == "event":
            self._progress.console.print(Text.assemble(
                (f"v{message.get('version'):<3} ", "dim"), str(message.get("summary", ""))))
        self._width = max([self._width, *(len(s.name) for s in view.steps)])
        for step in view.steps:
            self._update(step)

    def _update(self, step: StepView) -> None:
        style = STATUS_STYLE.get(step.status, "")
        status = f"[{style}]{step.status:<18}[/{style}]" if style else f"{step.status:<18}"
        note = (step.message or "")[:60].replace("[", r"\[")
        name = step.name.ljust(self._width)
        if step.name not in self._bars:
            self._bars[step.name] = self._progress.add_task(name, total=1.0, status=status,
                                                            note=note)
        self._progress.update(self._bars[step.name], description=name,
                              completed=step.fraction, status=status, note=note)


def _json_lines(_view: WatchView, message: dict[str, Any]) -> None:
    console.file.write(json.dumps(message, separators=(",", ":")) + "\n")
    console.file.flush()


def _nothing(_view: WatchView, _message: dict[str, Any]) -> None:
    return None


def stream_once(client: httpx.Client, view: WatchView, show: Show,
                read_timeout_s: float) -> tuple[WatchView, int | None, bool]:
    """Read one connection of the stream: the view after it, the server's reconnection
    delay (ms) if it set one, and whether the stream said it was finished (``end``, 204).
    A connection refused, cut or silent past ``read_timeout_s`` returns what it delivered."""
    headers = {"Last-Event-ID": str(view.last_version)} if view.last_version else {}
    parser = SseParser()
    try:
        with client.stream("GET", f"/tasks/{view.task_id}/events", headers=headers,
                           timeout=httpx.Timeout(10.0, read=read_timeout_s)) as reply:
            if reply.status_code == 204:  # it had already ended at our resume point
                return view, None, True
            if reply.status_code == 503:  # the feed is starting: retry as the server asks
                retry_after = reply.headers.get("Retry-After", "")
                return view, int(retry_after) * 1000 if retry_after.isdigit() else None, False
            if reply.status_code >= 400:
                reply.read()
                checked(reply)
            for line in reply.iter_lines():
                event = parser.feed(line)
                if event is None:
                    continue
                message = json.loads(event.data)
                view = apply(view, message)
                show(view, message)
                if view.ended:
                    return view, parser.retry_ms, True
                if message.get("type") == "dropped":
                    break
    except httpx.TransportError:
        pass  # resumed from the log by the next connection
    return view, parser.retry_ms, False


def follow(cli: CliState, task_id: str, *, quiet: bool = False, as_json: bool = False,
           timeout_s: float | None = None, max_reconnects: int = 20,
           reconnect_delay_s: float | None = None, read_timeout_s: float = READ_TIMEOUT_S,
           lines: bool = True, settle_s: float = 3.0) -> int:
    """Follow ``task_id`` to its end; the exit code of its outcome (exit_codes).

    ``settle_s``: how long the final status read waits for the projection to show the
    outcome (for the end reason it prints; the outcome is the stream's either way).
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with cli.client() as client:
        document = checked(client.get(f"/tasks/{task_id}"))
        view = seed(document)
        if as_json:
            view = _stream(client, view, _json_lines, deadline, max_reconnects,
                           reconnect_delay_s, read_timeout_s)
        elif quiet:
            view = _stream(client, view, _nothing, deadline, max_reconnects,
                           reconnect_delay_s, read_timeout_s)
        else:
            with StepBars(console, lines) as bars:
                view = _stream(client, view, bars.show, deadline, max_reconnects,
                               reconnect_delay_s, read_timeout_s)
        final = _final_status(client, task_id, view, settle_s) if view.ended else None
    if final is None:
        return exit_codes.WATCH_TIMEOUT if _passed(deadline) else exit_codes.STREAM_LOST
    # The stream's end is the outcome; the status projection may lag it by a moment.
    outcome = view.status if view.status in exit_codes.BY_STATUS else str(final["status"])
    if not as_json and not quiet:
        reason = final.get("end_reason") if final["status"] == outcome else None
        console.print(Text.assemble(f"task {task_id} ended ", status_text(outcome),
                                    f": {reason}" if reason else ""))
    return exit_codes.BY_STATUS.get(outcome, exit_codes.API_ERROR)


def _final_status(client: httpx.Client, task_id: str, view: WatchView,
                  wait_s: float = 3.0) -> dict[str, Any]:
    """The status document once it shows the stream's outcome (the projection follows the
    log a moment later), or as it is after ``wait_s``."""
    give_up = time.monotonic() + wait_s
    while True:
        document: dict[str, Any] = checked(client.get(f"/tasks/{task_id}"))
        if document["status"] == view.status or time.monotonic() >= give_up:
            return document
        time.sleep(0.2)


def _passed(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _stream(client: httpx.Client, view: WatchView, show: Show, deadline: float | None,
            max_reconnects: int, reconnect_delay_s: float | None,
            read_timeout_s: float) -> WatchView:
    """Stream, reconnecting after drops, until the end, the deadline or too many failures
    in a row (a connection that delivered an event resets the count)."""
    failures = 0
    while not _passed(deadline):
        before = view.last_version
        read = read_timeout_s if deadline is None else max(
            min(read_timeout_s, deadline - time.monotonic()), 0.1)
        view, retry_ms, finished = stream_once(client, view, show, read)
        if finished:
            return replace(view, ended=True)
        failures = 0 if view.last_version > before else failures + 1
        if failures > max_reconnects:
            return view
        base = reconnect_delay_s if reconnect_delay_s is not None else (
            retry_ms / 1000 if retry_ms is not None else 1.0)
        time.sleep(min(base * max(failures, 1), MAX_RECONNECT_DELAY_S))
    return view


def watch(
    ctx: typer.Context,
    task_id: str = typer.Argument(..., help="the task's id"),
    timeout: float | None = typer.Option(None, "--timeout", min=0.0,
                                         help="give up after this many seconds (exit 14)"),
    max_reconnects: int = typer.Option(20, "--max-reconnects", min=0,
                                       help="failed reconnections in a row before giving up "
                                            "(exit 15)"),
    reconnect_delay: float | None = typer.Option(
        None, "--reconnect-delay", min=0.0,
        help="seconds before reconnecting (default: the server's retry: hint)"),
    events: bool = typer.Option(True, "--events/--no-events",
                                help="print each event's audit line above the bars"),
    as_json: bool = typer.Option(False, "--json",
                                 help="print each stream message as one JSON line"),
) -> None:
    """Follow a task live, one progress bar per step; exit with its outcome.

    Exit 0 Completed, 10 Failed, 11 Cancelled, 12 CompensationFailed, 13 NeedsAttention,
    14 --timeout passed, 15 the stream could not be reopened.
    """
    raise typer.Exit(follow(state(ctx), task_id, as_json=as_json, timeout_s=timeout,
                            max_reconnects=max_reconnects, reconnect_delay_s=reconnect_delay,
                            lines=events))


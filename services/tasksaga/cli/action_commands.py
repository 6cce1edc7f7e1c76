"""``cancel``, ``retry`` and ``signal``: commands that act on one task."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import typer

from tasksaga.cli.client import ApiError, checked
from tasksaga.cli.context import console, errors, state
from tasksaga.cli.exit_codes import API_ERROR, USAGE
from tasksaga.cli.output import print_json
from tasksaga.cli.submit_command import read_json_argument
from tasksaga.cli.watch_command import follow

# Which operator retry each status takes (POST /tasks/{id}/<route>).
RETRY_ROUTE = {"CompensationFailed": "retry-compensation", "NeedsAttention": "retry-forward"}


def _said(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(answer)
    else:
        console.print(f"{answer['task_id']}: {answer['status']}", highlight=False)


def cancel(ctx: typer.Context, task_id: str = typer.Argument(..., help="the task's id"),
           reason: str | None = typer.Option(None, "--reason", "-r",
                                             help="recorded in the audit trail"),
           watch: bool = typer.Option(False, "--watch", "-w",
                                      help="follow the task to its end (exit 11 Cancelled)"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Cancel a running task: what it did is compensated, then it ends Cancelled."""
    cli = state(ctx)
    with cli.client() as client:
        answer = checked(client.post(f"/tasks/{task_id}/cancel",
                                     params={"reason": reason} if reason else {}))
    _said(answer, as_json)
    if watch:
        raise typer.Exit(follow(cli, task_id, quiet=as_json))


def retry_route(status: str, compensation: bool, forward: bool) -> str:
    """The retry a task in ``status`` takes, or the one the flags force; a clear refusal
    when neither applies."""
    if compensation and forward:
        raise ValueError("--compensation and --forward exclude each other")
    if compensation:
        return "retry-compensation"
    if forward:
        return "retry-forward"
    if status not in RETRY_ROUTE:
        raise ValueError(f"the task is {status}: only a task in CompensationFailed (retry its "
                         "compensation) or NeedsAttention (retry forward) can be retried")
    return RETRY_ROUTE[status]


def retry(ctx: typer.Context, task_id: str = typer.Argument(..., help="the task's id"),
          compensation: bool = typer.Option(False, "--compensation",
                                            help="retry the failed compensation"),
          forward: bool = typer.Option(False, "--forward",
                                       help="retry forward from the failed step"),
          watch: bool = typer.Option(False, "--watch", "-w",
                                     help="follow the retried task to its new end"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Operator retry of a task that waits for one (picked from its status).

    CompensationFailed retries its compensation, NeedsAttention goes forward again; a flag
    forces one.
    """
    cli = state(ctx)
    with cli.client() as client:
        before = None if (compensation or forward) and not watch else checked(
            client.get(f"/tasks/{task_id}"))
        try:
            route = retry_route(before["status"] if before else "", compensation, forward)
        except ValueError as error:
            errors.print(f"[red]error:[/red] task {task_id}: {error}", highlight=False)
            # Refused like the API refuses it (a 409), before sending anything.
            raise typer.Exit(USAGE if compensation and forward else API_ERROR) from error
        _said(checked(client.post(f"/tasks/{task_id}/{route}")), as_json)
        if watch and before is not None:
            # Until the retry is in the log, its stream would end at the old terminal event.
            wait_past_version(client, task_id, int(before["version"]))
    if watch:
        raise typer.Exit(follow(cli, task_id, quiet=as_json))


def wait_past_version(client: httpx.Client, task_id: str, version: int,
                      timeout_s: float = 60.0) -> None:
    """Return once the task's status shows an event after ``version``."""
    deadline = time.monotonic() + timeout_s
    while checked(client.get(f"/tasks/{task_id}"))["version"] <= version:
        if time.monotonic() >= deadline:
            raise ApiError(504, f"task {task_id} shows no event after version {version} "
                                f"{timeout_s:.0f} s after the retry was accepted; "
                                f"`tasksaga watch {task_id}` follows it when it does")
        time.sleep(0.2)


def signal(ctx: typer.Context, task_id: str = typer.Argument(..., help="the task's id"),
           name: str = typer.Argument(..., help="the wait_for step, e.g. Approve"),
           data: str = typer.Option("{}", "--data", "-d",
                                    help="the signal's body: '{...}', @file.json or -"),
           signal_id: str | None = typer.Option(
               None, "--signal-id", help="makes the signal idempotent: the same id again is "
                                         "not a second signal (default: a new id, printed)"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Send the signal a wait_for step waits for (an approval, say)."""
    body = read_json_argument(data, "--data")
    chosen = signal_id or uuid.uuid4().hex
    with state(ctx).client() as client:
        answer = checked(client.post(f"/tasks/{task_id}/signals/{name}", json=body,
                                     headers={"Signal-Id": chosen}))
    if as_json:
        print_json(answer)
    else:
        console.print(f"{task_id}: {name} {answer['status']} (Signal-Id {chosen})",
                      highlight=False)

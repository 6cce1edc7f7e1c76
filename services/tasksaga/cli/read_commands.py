"""``list``, ``show`` and ``audit``: read the API's projections, as tables or ``--json``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

import httpx
import typer
from rich import box
from rich.table import Column, Table

from tasksaga.cli.client import checked
from tasksaga.cli.context import console, state
from tasksaga.cli.output import percent, plain, print_json, short_time, status_text

JSON_OPTION = typer.Option(False, "--json", help="print JSON for scripts instead of a table")


def task_pages(client: httpx.Client, params: dict[str, Any], page_size: int
               ) -> Iterator[tuple[list[dict[str, Any]], bool]]:
    """Every page of ``GET /tasks`` for ``params``, following ``next_cursor``; each with
    whether another page follows."""
    cursor: str | None = None
    while True:
        query = {**params, "limit": page_size, **({"before": cursor} if cursor else {})}
        page = checked(client.get("/tasks", params=query))
        cursor = page.get("next_cursor")
        more = bool(cursor and page["tasks"])
        yield page["tasks"], more
        if not more:
            return


def list_tasks(
    ctx: typer.Context,
    task_type: str | None = typer.Option(None, "--type", "-t", help="only this task type"),
    status: Annotated[list[str] | None, typer.Option(
        "--status", "-s", help="only tasks in this status (repeatable)")] = None,
    since: Annotated[datetime | None, typer.Option(
        "--since", help="submitted at or after (ISO-8601)")] = None,
    until: Annotated[datetime | None, typer.Option(
        "--until", help="submitted before (ISO-8601)")] = None,
    idempotency_key: str | None = typer.Option(None, "--idempotency-key"),
    limit: int = typer.Option(50, "--limit", "-n", min=1,
                              help="show at most this many tasks (newest first)"),
    every: bool = typer.Option(False, "--all", help="every matching task, page after page"),
    page_size: int = typer.Option(100, "--page-size", min=1, max=1000,
                                  help="tasks asked for per request"),
    as_json: bool = JSON_OPTION,
) -> None:
    """List your tenant's tasks, newest first, following the API's cursor pages."""
    params: dict[str, Any] = {"status": status} if status else {}
    if task_type:
        params["task_type"] = task_type
    if since:
        params["submitted_after"] = since.isoformat()
    if until:
        params["submitted_before"] = until.isoformat()
    if idempotency_key:
        params["idempotency_key"] = idempotency_key
    tasks: list[dict[str, Any]] = []
    more = False
    with state(ctx).client() as client:
        # One more than shown: whether more match is then known without another request.
        for page, more in task_pages(client, params,
                                     page_size if every else min(page_size, limit + 1)):
            tasks.extend(page)
            if not every and len(tasks) >= limit:
                more = more or len(tasks) > limit
                tasks = tasks[:limit]
                break
    if as_json:
        print_json(tasks)
        return
    table = Table(title=f"{len(tasks)} task(s)", title_justify="left", box=box.SIMPLE_HEAD)
    # Ids are copied from here: never cut; on a narrow terminal the time wraps instead.
    for name in ("task", "type", "status", "v"):
        table.add_column(name, no_wrap=True)
    table.add_column("submitted")
    for task in tasks:
        table.add_row(task["task_id"], task["task_type"], status_text(task["status"]),
                      str(task["version"]), short_time(task["submitted_at"]))
    console.print(table)
    if more:
        console.print(f"[dim]more tasks match: --limit {limit * 2} or --all[/dim]")


def show(ctx: typer.Context, task_id: str = typer.Argument(..., help="the task's id"),
         as_json: bool = JSON_OPTION) -> None:
    """A task's status: its steps, progress, failure, conditions and response."""
    with state(ctx).client() as client:
        document = checked(client.get(f"/tasks/{task_id}"))
    if as_json:
        print_json(document)
        return
    print_status(document)


def print_status(document: dict[str, Any]) -> None:
    console.print(f"[bold]{plain(document['task_id'])}[/bold]  {plain(document['task_type'])}"
                  f"  v{document['version']}  ", status_text(document["status"]))
    console.print(f"submitted {short_time(document['submitted_at'])}, "
                  f"updated {short_time(document['updated_at'])}")
    if document.get("end_reason"):
        console.print(f"reason: {plain(document['end_reason'])}")
    steps = Table("step", "status", "attempt", "progress", "detail", box=box.SIMPLE_HEAD)
    for step in document["steps"]:
        detail = step.get("error_message") or step.get("progress_message") or (
            f"waiting until {short_time(step['waiting_until'])}"
            if step.get("waiting_until") else "") or (
            "waiting for a worker with " + ", ".join(step["waiting_for_capabilities"])
            if step.get("waiting_for_capabilities") else "")
        steps.add_row(plain(step["step"]), status_text(step["status"]), str(step["attempt"]),
                      percent(step.get("progress")), plain(detail) if detail else "")
    console.print(steps)
    for condition in document.get("conditions", []):
        console.print(f"condition {plain(condition['description'])} "
                      f"({plain(condition['function'])}) = {plain(condition['result'])}")
    if document.get("response") is not None:
        console.print("response:", plain(document["response"]))


def audit(ctx: typer.Context, task_id: str = typer.Argument(..., help="the task's id"),
          after_version: int = typer.Option(0, "--after", min=0,
                                            help="only entries after this version"),
          as_json: bool = JSON_OPTION) -> None:
    """A task's audit trail: one line per event of its log, every page."""
    entries: list[dict[str, Any]] = []
    with state(ctx).client() as client:
        after: int | None = after_version
        while after is not None:
            page = checked(client.get(f"/tasks/{task_id}/audit",
                                      params={"after_version": after}))
            entries.extend(page["entries"])
            after = page.get("next_after_version")
    if as_json:
        print_json(entries)
        return
    # No step column: the summary names the step.
    table = Table("v", Column("at", no_wrap=True), "event", Column("summary", ratio=1),
                  title=f"audit of {task_id}", title_justify="left", box=box.SIMPLE_HEAD)
    for entry in entries:
        table.add_row(str(entry["version"]), short_time(entry["occurred_at"]),
                      plain(entry["event_type"]), plain(entry["summary"]))
    console.print(table)


def whoami(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """The profile in use (where, which) and who the API says the token is."""
    cli = state(ctx)
    with cli.client() as client:
        caller = checked(client.get("/whoami"))
    document = {"profile": cli.profile.name, "url": cli.profile.url, **caller}
    if as_json:
        print_json(document)
        return
    console.print(f"profile {plain(cli.profile.name)} -> {plain(cli.profile.url)}")
    console.print(f"{plain(caller['subject'])} ({plain(caller['kind'])}) of tenant "
                  f"{plain(caller['tenant'])}, roles: {plain(', '.join(caller['roles']))}")

"""``tasksaga repair``: an operator's repairs of one task (skip a failed compensation,
resolve, redrive) and the orphan sweep (report, show, sweep). Each goes through the API, which
checks the caller's role and tenant and records the action (docs/operations.md)."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tasksaga.cli.client import api_client, checked

console = Console(soft_wrap=True)


def _client(ctx: typer.Context) -> httpx.Client:
    # Imported here: the root app (tasksaga.cli.app) registers this module as it loads.
    from tasksaga.cli.app import state

    return api_client(state(ctx).profile)

app = typer.Typer(no_args_is_help=True, help="Operator repair of tasks, and the orphan sweep.")
orphans = typer.Typer(no_args_is_help=True,
                      help="Objects no live task references: a report first, then the sweep.")
app.add_typer(orphans, name="orphans")

REASON = typer.Option(..., "--reason", "-r", help="why (recorded in the task's audit trail)")


def _post(ctx: typer.Context, path: str, body: dict[str, Any] | None = None,
          params: dict[str, Any] | None = None) -> Any:
    with _client(ctx) as client:
        return checked(client.post(path, json=body, params=params))


def _get(ctx: typer.Context, path: str) -> Any:
    with _client(ctx) as client:
        return checked(client.get(path))


@app.command("skip-compensation")
def skip_compensation(ctx: typer.Context, task_id: str,
                      step: str = typer.Option(..., "--step", "-s",
                                               help="the step whose compensation failed"),
                      reason: str = REASON) -> None:
    """Leave STEP's effect in place; compensation goes on with the steps before it."""
    reply = _post(ctx, f"/tasks/{task_id}/skip-compensation", {"step": step, "reason": reason})
    console.print(f"{reply['status']}; follow it: tasksaga status {task_id}")


@app.command()
def resolve(ctx: typer.Context, task_id: str, reason: str = REASON) -> None:
    """End a task in CompensationFailed or NeedsAttention as Resolved."""
    reply = _post(ctx, f"/tasks/{task_id}/resolve", {"reason": reason})
    console.print(f"{reply['status']}; follow it: tasksaga status {task_id}")


@app.command()
def redrive(ctx: typer.Context, task_id: str, reason: str = REASON) -> None:
    """Resend the commands of a stuck task's steps in flight (harmless if not lost)."""
    reply = _post(ctx, f"/tasks/{task_id}/redrive", {"reason": reason})
    console.print(f"{reply['status']}; the audit trail names what was resent")


def _print_report(report: dict[str, Any]) -> None:
    table = Table("bucket", "key", "size", "reason", "outcome",
                  title=f"orphan report {report['sweep_id']} ({len(report['objects'])} objects"
                        f", {report['age_s']:.0f} s old)")
    for obj in report["objects"]:
        table.add_row(*(Text(str(cell)) for cell in (
            obj["bucket"], obj["key"], obj["size"], obj["reason"], obj["outcome"] or "-")))
    console.print(table)
    if report["swept_at"]:
        console.print(f"swept at {report['swept_at']} by {report['swept_by']}")
    else:
        console.print(f"delete them: tasksaga repair orphans sweep {report['sweep_id']} "
                      "(once the report is past the grace period)")


@orphans.command("report")
def orphans_report(
    ctx: typer.Context,
    bucket: Annotated[list[str] | None, typer.Option(
        "--bucket", "-b", help="bucket to scan (repeatable; default: the upload steps' "
                               "buckets)")] = None,
    retention_hours: float = typer.Option(168.0, help="objects of Completed or Resolved tasks "
                                                      "are kept this long"),
) -> None:
    """List the objects no live task references, and keep the list as a report."""
    _print_report(_post(ctx, "/orphans/reports", params={
        "bucket": bucket or [], "retention_hours": retention_hours}))


@orphans.command("show")
def orphans_show(ctx: typer.Context, sweep_id: str) -> None:
    """A report, and each object's outcome once swept."""
    _print_report(_get(ctx, f"/orphans/reports/{sweep_id}"))


@orphans.command("sweep")
def orphans_sweep(ctx: typer.Context, sweep_id: str) -> None:
    """Delete the report's objects that are still unreferenced (report past its grace)."""
    _print_report(_post(ctx, f"/orphans/reports/{sweep_id}/sweep"))

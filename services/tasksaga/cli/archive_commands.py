"""``tasksaga archive``: archived tasks, through the API (authorized like any action on a task).

    tasksaga archive show TASK_ID      where the task's history is archived, and whether restored
    tasksaga archive restore TASK_ID   bring its history back so that its audit reads again

Running the archiver itself needs database and object-store credentials, not an API token:
that is ``tasksaga-archive run`` on a host that has them (docs/operations.md).
"""

from __future__ import annotations

import typer
from rich.console import Console

from tasksaga.cli.client import api_client, checked
from tasksaga.cli.profile import CliProfile

app = typer.Typer(no_args_is_help=True, help="Archived tasks: where they are, restore them.")
console = Console()
errors = Console(stderr=True)


def _profile(ctx: typer.Context) -> CliProfile:
    # The root app (cli/app.py) registers this group and sets the profile on the context.
    profile = getattr(ctx.find_root().obj, "profile", None)
    assert isinstance(profile, CliProfile), "run through the tasksaga command"
    return profile


@app.command("show")
def show(ctx: typer.Context, task_id: str = typer.Argument(..., help="the task's id")) -> None:
    """Where the task's history is archived (nothing to show when it is in the hot log)."""
    with api_client(_profile(ctx)) as client:
        status = checked(client.get(f"/tasks/{task_id}"))
    archived = status.get("archived")
    if archived is None:
        console.print(f"task {task_id} is not archived ({status['status']})")
        return
    restored = archived["restored_at"]
    console.print(f"task {task_id} ({status['status']}) archived: {archived['location']}"
                  f" at {archived['archived_at']}"
                  + (f", restored at {restored}" if restored else ", not restored"))


@app.command("restore")
def restore(ctx: typer.Context,
            task_id: str = typer.Argument(..., help="the archived task's id")) -> None:
    """Bring an archived task's history back for audit (needs the operator role)."""
    with api_client(_profile(ctx)) as client:
        reply = checked(client.post(f"/tasks/{task_id}/restore"))
    if not isinstance(reply, dict):
        errors.print(f"[red]error:[/red] unexpected reply to the restore: {reply!r}")
        raise typer.Exit(1)
    console.print(f"restored {reply['restored_events']} events of task {task_id} from "
                  f"{reply['archived']['location']}; audit: {reply['audit_url']}")

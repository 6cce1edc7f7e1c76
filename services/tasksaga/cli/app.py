"""The ``tasksaga`` command: the root app, global options, and the registered command groups."""

from __future__ import annotations

from dataclasses import dataclass

import typer
from rich.console import Console

from tasksaga.cli import archive_commands
from tasksaga.cli.client import ApiError
from tasksaga.cli.profile import CliProfile, ProfileError, load_profile

app = typer.Typer(name="tasksaga", no_args_is_help=True,
                  help="Submit, watch and operate tasksaga tasks through the HTTP API.")
console = Console()
errors = Console(stderr=True)


@dataclass
class CliState:
    profile: CliProfile


@app.callback()
def _global_options(
    ctx: typer.Context,
    profile: str | None = typer.Option(None, "--profile", "-p",
                                       help="profile from the config file"),
    url: str | None = typer.Option(None, "--url", help="API base URL (env TASKSAGA_URL)"),
    token: str | None = typer.Option(None, "--token", help="bearer token (env TASKSAGA_TOKEN)"),
) -> None:
    try:
        ctx.obj = CliState(profile=load_profile(profile, url=url, token=token))
    except ProfileError as error:
        errors.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error


app.add_typer(archive_commands.app, name="archive")


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def main() -> None:
    try:
        app()
    except ApiError as error:
        errors.print(f"[red]error:[/red] {error}")
        raise SystemExit(1) from error

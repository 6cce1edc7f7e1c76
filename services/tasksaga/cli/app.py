"""The ``tasksaga`` command: the root app, global options, and the registered command groups.

Exit codes are in :mod:`tasksaga.cli.exit_codes` (docs/cli.md lists them).
"""

from __future__ import annotations

from typing import Any

import httpx
import typer
from typer.core import TyperGroup

from tasksaga.cli import (
    action_commands,
    archive_commands,
    exit_codes,
    read_commands,
    submit_command,
    tool_commands,
    watch_command,
)
from tasksaga.cli.client import ApiError
from tasksaga.cli.context import CliState, console, errors, state
from tasksaga.cli.profile import ProfileError, load_profile

__all__ = ["CliState", "app", "console", "errors", "main", "state"]


class _RootGroup(TyperGroup):
    """Turns the API's refusals and an unreachable API into one line on stderr and an exit
    code, for every command (including the groups registered later)."""

    # ``Any``: typer's vendored click Context is private; this only passes it on.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as error:
            errors.print(f"[red]error:[/red] {error}", highlight=False)
            raise typer.Exit(exit_codes.API_ERROR) from error
        except httpx.TransportError as error:
            url = error.request.url if _has_request(error) else "the API"
            errors.print(f"[red]error:[/red] cannot reach {url}: {error or type(error).__name__}"
                         " (is the API running? `make up` starts it; --url or TASKSAGA_URL "
                         "points elsewhere)", highlight=False)
            raise typer.Exit(exit_codes.UNREACHABLE) from error


def _has_request(error: httpx.TransportError) -> bool:
    try:
        error.request  # noqa: B018 - raises RuntimeError when the error carries none
    except RuntimeError:
        return False
    return True


app = typer.Typer(name="tasksaga", cls=_RootGroup, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="Submit, watch and operate tasksaga tasks through the HTTP API.")


@app.callback()
def _global_options(
    ctx: typer.Context,
    profile: str | None = typer.Option(None, "--profile", "-p",
                                       help="profile from the config file"),
    url: str | None = typer.Option(None, "--url", help="API base URL (env TASKSAGA_URL)"),
    token: str | None = typer.Option(None, "--token", help="bearer token (env TASKSAGA_TOKEN)"),
) -> None:
    preset = ctx.obj if isinstance(ctx.obj, CliState) else None
    try:
        loaded = load_profile(profile, url=url, token=token)
    except ProfileError as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(exit_codes.USAGE) from error
    ctx.obj = CliState(profile=loaded, transport=preset.transport if preset else None)


app.command("submit")(submit_command.submit)
app.command("watch")(watch_command.watch)
app.command("list")(read_commands.list_tasks)
app.command("show")(read_commands.show)
app.command("audit")(read_commands.audit)
app.command("cancel")(action_commands.cancel)
app.command("retry")(action_commands.retry)
app.command("signal")(action_commands.signal)
app.command("whoami")(read_commands.whoami)
app.command("check")(tool_commands.check)
app.add_typer(tool_commands.replay_app, name="replay")


def _register_groups() -> None:
    # The command groups import ``state`` and ``console`` from here: registered after both.
    from tasksaga.cli import dlq_commands, repair_commands

    app.add_typer(repair_commands.app, name="repair")
    app.add_typer(dlq_commands.app, name="dlq")
    app.add_typer(archive_commands.app, name="archive")


_register_groups()


def main() -> None:
    app()

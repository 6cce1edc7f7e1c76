"""``tasksaga dlq``: the dead letters an operator may see (their tenant's; a platform operator
every one), one letter in full, and its replay to the topic it came from."""

from __future__ import annotations

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

app = typer.Typer(no_args_is_help=True,
                  help="Dead letters: messages a consumer could not decode or process.")


@app.command("list")
def list_letters(
    ctx: typer.Context,
    topic: str | None = typer.Option(None, "--topic", "-t", help="source topic, exactly"),
    reason: str | None = typer.Option(None, "--reason", "-r", help="a part of the reason"),
    after: int = typer.Option(0, "--after", help="the next page's start (printed below)"),
    limit: int = typer.Option(50, "--limit", "-n", min=1),
) -> None:
    """One page of dead letters, oldest first."""
    params: dict[str, str | int] = {"after": after, "limit": limit}
    if topic:
        params["topic"] = topic
    if reason:
        params["reason"] = reason
    with _client(ctx) as client:
        page = checked(client.get("/dead-letters", params=params))
    table = Table("id", "source", "task", "failed at", "replayed", "reason")
    for letter in page["dead_letters"]:
        source = letter["source"]
        cells = (str(letter["id"]),
                 f"{source['topic']}[{source['partition']}]@{source['offset']}",
                 letter["task_id"] or "-", letter["failed_at"],
                 f"{letter['replay_count']}x" if letter["replay_count"] else "-",
                 letter["reason"])
        table.add_row(*(Text(cell) for cell in cells))  # not markup: reasons hold brackets
    console.print(table)
    if page["next_after"] is not None:
        console.print(f"next page: tasksaga dlq list --after {page['next_after']}")


@app.command()
def show(ctx: typer.Context, letter_id: int) -> None:
    """The letter in full: reason, origin, headers, and its record decoded when it decodes."""
    with _client(ctx) as client:
        console.print_json(data=checked(client.get(f"/dead-letters/{letter_id}")))


@app.command()
def replay(ctx: typer.Context, letter_id: int,
           again: bool = typer.Option(False, "--again",
                                      help="replay a letter that was replayed before")) -> None:
    """Produce the original record to its source topic (once, unless --again)."""
    with _client(ctx) as client:
        reply = checked(client.post(f"/dead-letters/{letter_id}/replay",
                                    params={"again": again}))
    console.print(f"dead letter {letter_id} replayed to {reply['replayed_to']} "
                  f"(replay {reply['replay_count']})")

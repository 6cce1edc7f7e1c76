"""``submit``: a JSON request, or form fields and files streamed from disk with a progress bar."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from tasksaga.cli import multipart
from tasksaga.cli.client import checked
from tasksaga.cli.context import console, errors, state
from tasksaga.cli.exit_codes import USAGE
from tasksaga.cli.output import print_json
from tasksaga.cli.watch_command import follow


def _usage(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(USAGE)


def read_json_argument(value: str, what: str) -> Any:
    """``'{...}'`` itself, ``@path`` a file's content, ``-`` standard input; parsed as JSON."""
    if value == "-":
        text = sys.stdin.read()
    elif value.startswith("@"):
        path = Path(value[1:]).expanduser()
        if not path.is_file():
            raise _usage(f"{what}: {path} is not a file")
        text = path.read_text()
    else:
        text = value
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise _usage(f"{what} is not valid JSON ({error}); pass a JSON object, @file.json "
                     "or - for standard input") from error


def pairs(values: list[str], what: str) -> list[tuple[str, str]]:
    parsed: list[tuple[str, str]] = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise _usage(f"{what} {value!r} must be NAME=VALUE")
        parsed.append((name, rest))
    return parsed


def file_pairs(values: list[str]) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for name, raw in pairs(values, "--file"):
        path = Path(raw.removeprefix("@")).expanduser()
        if not path.is_file():
            raise _usage(f"--file {name}={raw}: {path} is not a readable file")
        files.append((name, path))
    return files


def upload(client: httpx.Client, path: str, params: dict[str, str], headers: dict[str, str],
           fields: list[tuple[str, str]], files: list[tuple[str, Path]]) -> httpx.Response:
    """POST the multipart body, streamed from disk, with a progress bar on stderr."""
    boundary, segments = multipart.layout(fields, files)
    total = multipart.body_length(segments)
    names = ", ".join(p.name for _, p in files) or "form"
    with Progress(TextColumn("uploading {task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=errors,
                  transient=False) as progress:
        bar = progress.add_task(names, total=total)
        return client.post(path, params=params, content=multipart.stream(
            segments, lambda n: progress.advance(bar, n)), headers={
            **headers, "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(total)})


def submit(
    ctx: typer.Context,
    task_type: str = typer.Argument(..., help="the task type, e.g. CreateZip"),
    data: str | None = typer.Option(None, "--data", "-d",
                                    help="the request as JSON: '{...}', @file.json or -"),
    field: Annotated[list[str] | None, typer.Option(
        "--field", "-F", help="a form field NAME=VALUE (repeatable; with --file)")] = None,
    file: Annotated[list[str] | None, typer.Option(
        "--file", "-f", help="a file field NAME=PATH (repeatable: several files under one "
                             "name make a list)")] = None,
    idempotency_key: str | None = typer.Option(None, "--idempotency-key", "-k",
                                               help="the same key gives the same task"),
    callback_url: str | None = typer.Option(None, "--callback-url",
                                            help="the notifier POSTs the outcome here"),
    watch: bool = typer.Option(False, "--watch", "-w",
                               help="follow the task to its end; exit with its outcome"),
    events: bool = typer.Option(True, "--events/--no-events",
                                help="with --watch: print each event's audit line"),
    as_json: bool = typer.Option(False, "--json", help="print the API's 202 answer as JSON"),
) -> None:
    """Submit a task: a JSON request (--data), or form fields and files (--field, --file)."""
    if data is not None and (field or file):
        raise _usage("--data sends a JSON request; with files, give the other fields as "
                     "--field NAME=VALUE")
    fields, files = pairs(field or [], "--field"), file_pairs(file or [])
    params = {"callback_url": callback_url} if callback_url else {}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    cli = state(ctx)
    with cli.client() as client:
        if fields or files:
            try:
                reply = upload(client, f"/tasks/{task_type}", params, headers, fields, files)
            except OSError as error:  # a file unreadable, or changed while it was sent
                raise _usage(f"upload stopped: {error}") from error
        else:
            body = read_json_argument(data, "--data") if data is not None else {}
            reply = client.post(f"/tasks/{task_type}", params=params, headers=headers,
                                json=body)
        accepted = checked(reply)
    if as_json:
        print_json(accepted)
    else:
        again = " (already submitted with this Idempotency-Key)" if accepted.get(
            "already_submitted") else ""
        console.print(f"accepted: task [bold]{accepted['task_id']}[/bold]{again}",
                      highlight=False)
    if watch:
        raise typer.Exit(follow(cli, accepted["task_id"], quiet=as_json, lines=events))

"""``check`` (definition diagnostics) and ``replay`` (the event log tooling): local tools.

They do not call the API: ``check`` imports modules of definitions, ``replay`` reads the
event store with ``TASKSAGA_DATABASE_URL`` and the payload keys (``TASKSAGA_PAYLOAD_KEYS``)
from the environment, like ``tasksaga-check`` and ``tasksaga-replay``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from tasksaga.cli.context import console, errors
from tasksaga.cli.exit_codes import REBUILD_INCOMPLETE, USAGE
from tasksaga.cli.output import plain, print_json, status_text

replay_app = typer.Typer(no_args_is_help=True,
                         help="The event log: rebuild the projections, fold one task's stream.")


def importable(module: str, cwd: Path) -> tuple[str, Path | None]:
    """A dotted module name as it is; a ``.py`` file as the module it is from ``cwd`` when
    it lies below it (``pkg/tasks.py`` -> ``pkg.tasks``), else by its own name from its
    folder (the folder to put on ``sys.path`` is returned with it)."""
    if not module.endswith(".py"):
        return module, None
    path = (cwd / module).resolve()
    if not path.is_file():
        return module, None  # reported by the check as a module that cannot be imported
    try:
        relative = path.relative_to(cwd.resolve())
    except ValueError:
        return path.stem, path.parent
    return ".".join(relative.with_suffix("").parts), None


def check(modules: Annotated[list[str], typer.Argument(
              help="modules of definitions: dotted (tasksaga_examples.zip_archive) or "
                   "files (examples/tasksaga_examples/zip_archive.py)")],
          lock: Annotated[Path | None, typer.Option(
              "--lock", help="the lock file (default: tasksaga.lock.json here, when it "
                             "exists)")] = None,
          update_lock: bool = typer.Option(False, "--update-lock",
                                           help="record the definitions' step graphs"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Check the task definitions of modules: every diagnostic (docs/diagnostics.md).

    Exit 0 valid, 1 an error, 2 a module that cannot be imported.
    """
    from tasksaga.check import run_check

    # A console script's sys.path lacks the current directory: add it, so that the modules
    # of the project the command is run in can be imported.
    cwd = Path.cwd()
    names: list[str] = []
    for module in modules:
        name, folder = importable(module, cwd)
        names.append(name)
        for entry in (str(cwd), str(folder) if folder else None):
            if entry and entry not in sys.path:
                sys.path.insert(0, entry)
    status, lines = run_check(names, lock, update_lock)
    if as_json:
        print_json({"status": status, "lines": lines})
    for line in [] if as_json else lines:
        style = "green" if line.endswith(")") and ": ok (" in line else (
            "red" if " error: " in line or "cannot be imported" in line else "yellow")
        console.print(Text(line, style=style))
    raise typer.Exit(status)


def _codec_and_url(database_url: str | None) -> tuple[Any, Any]:
    """The codec and what to read: ``--database-url`` alone, else the services' shards
    (TASKSAGA_SHARDS) or database (TASKSAGA_DATABASE_URL)."""
    from tasksaga.adapters.avro_codec import AvroCodec
    from tasksaga.adapters.payload_crypto import PayloadKeyError, payload_cipher_from_env
    from tasksaga.adapters.replay import target_from_env
    from tasksaga.core.shards import ShardConfigError

    try:
        target = target_from_env(database_url)
    except ShardConfigError as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(USAGE) from error
    if target is None:
        errors.print("[red]error:[/red] set TASKSAGA_DATABASE_URL or TASKSAGA_SHARDS "
                     "(`eval $(tools/stack env)` for the local stack) or pass --database-url",
                     highlight=False)
        raise typer.Exit(USAGE)
    try:
        return AvroCodec(cipher=payload_cipher_from_env()), target
    except PayloadKeyError as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(USAGE) from error


DATABASE_OPTION = typer.Option(
    None, "--database-url",
    help="this database alone (default: every shard of env TASKSAGA_SHARDS, else env "
         "TASKSAGA_DATABASE_URL)")


ARCHIVES_OPTION = typer.Option(
    False, "--include-archives",
    help="also the archived tasks, read from object storage (TASKSAGA_S3_*, "
         "TASKSAGA_ARCHIVE_BUCKET; docs/operations.md, 'Retention and archival')")


WORKERS_OPTION = typer.Option(
    None, "--workers", min=1,
    help="processes projecting, each a share of the tasks (default: the cores, up to 4)")


@replay_app.command("rebuild")
def rebuild(database_url: str | None = DATABASE_OPTION,
            include_archives: bool = ARCHIVES_OPTION,
            workers: int | None = WORKERS_OPTION) -> None:
    """Empty the projection tables and project the whole log again, on every shard.

    Safe while the services run: the orchestrators' projectors wait, then carry on.
    """
    from tasksaga.adapters.parallel_rebuild import DEFAULT_WORKERS, RebuildWorkerFailed
    from tasksaga.adapters.replay import archiver_from_env, rebuild_shards, rebuilt_line

    codec, target = _codec_and_url(database_url)
    archiver = archiver_from_env() if include_archives else None
    try:
        rebuilt = rebuild_shards(target, codec, archiver, workers or DEFAULT_WORKERS)
    except RebuildWorkerFailed as error:
        errors.print(f"[red]the rebuild is incomplete, run it again:[/red] {error}",
                     highlight=False)
        raise typer.Exit(REBUILD_INCOMPLETE) from error
    for done in rebuilt:
        console.print(rebuilt_line(done, len(rebuilt) > 1), highlight=False)


def step_changes(before: dict[str, str], after: dict[str, str]) -> str:
    """``CreateArchive: Pending→Running`` for each step whose state the event changed."""
    return ", ".join(f"{name}: {before.get(name, 'Pending')}→{status}"
                     for name, status in after.items() if before.get(name) != status)


@replay_app.command("task")
def task(task_id: str = typer.Argument(..., help="the task's id"),
         database_url: str | None = DATABASE_OPTION,
         as_json: bool = typer.Option(False, "--json"),
         include_archives: bool = ARCHIVES_OPTION) -> None:
    """Fold one task's stream from the log, event by event.

    Each event's audit line, the task's status after it and the steps it changed; then the
    state the fold ends in.
    """
    from tasksaga.adapters.replay import archiver_from_env, fold_steps, load_stream

    codec, target = _codec_and_url(database_url)
    archiver = archiver_from_env() if include_archives else None
    folded = fold_steps(load_stream(target, codec, task_id, archiver))
    if not folded:
        errors.print(f"[red]error:[/red] no events for task {task_id} in the log",
                     highlight=False)
        raise typer.Exit(1)
    rows: list[dict[str, Any]] = [{
        "version": f.envelope.version, "event_type": type(f.envelope.payload).__name__,
        "summary": f.summary, "status": str(f.state.status),
        "steps": {name: str(s.status) for name, s in f.state.steps.items()},
    } for f in folded]
    if as_json:
        print_json({"task_id": task_id, "events": rows, "state": asdict(folded[-1].state)})
        return
    table = Table("v", "event", "summary", "task", "steps changed",
                  title=f"fold of {task_id}", title_justify="left", box=box.SIMPLE_HEAD)
    before: dict[str, str] = {}
    for row in rows:
        table.add_row(str(row["version"]), row["event_type"], plain(row["summary"]),
                      status_text(row["status"]), plain(step_changes(before, row["steps"])))
        before = row["steps"]
    console.print(table)
    final = folded[-1].state
    console.print("final state:", status_text(str(final.status)),
                  f"v{final.version}", plain(final.end_reason or ""))

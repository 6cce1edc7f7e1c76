"""Output for people (rich tables, colours) and for scripts (``--json``)."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from rich.text import Text

from tasksaga.cli.context import console

# How each status (of a task or a step) is coloured in tables and progress bars.
STATUS_STYLE = {
    "Completed": "green", "Failed": "red", "Cancelled": "yellow",
    "CompensationFailed": "bold red", "NeedsAttention": "bold magenta",
    "Running": "cyan", "Accepted": "cyan", "Compensating": "yellow", "Compensated": "yellow",
    "RetryScheduled": "yellow", "CompensationRetryScheduled": "yellow", "Waiting": "blue",
    "Skipped": "dim", "Pending": "dim", "NotRun": "dim", "VersionMissing": "magenta",
}


def print_json(data: Any) -> None:
    """One JSON document on stdout, nothing else: what ``--json`` promises scripts."""
    console.file.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    console.file.flush()


def status_text(status: str | None) -> Text:
    value = status or "-"
    return Text(value, style=STATUS_STYLE.get(value, ""))


def short_time(iso: str | None) -> str:
    """``2026-12-02T06:30:44.123456+00:00`` -> ``2026-12-02 06:30:44``."""
    if not iso:
        return "-"
    return iso.replace("T", " ")[:19]


def plain(value: Any) -> str:
    """A value for a table cell, markup escaped (API text is never rich markup)."""
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return escape(json.dumps(value, default=str))
    return escape(str(value))


def percent(progress: float | None) -> str:
    return "-" if progress is None else f"{progress:.0%}"

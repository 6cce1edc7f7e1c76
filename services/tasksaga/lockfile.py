"""The fingerprint lock file of ``tasksaga-check``: which step graph each (type, version) had.

Like a package lock file, it is committed and reviewed: ``tasksaga-check --update-lock``
writes it; ``tasksaga-check`` then fails (TS140) when a definition's step graph differs from
the one recorded for its version, since running tasks of that version would be decided by a
graph their log does not fit. The file holds, per type and version, the fingerprint and the
canonical graph, so the diagnostic can say what changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasksaga.core.definition import Diagnostic, TaskDefinition
from tasksaga.core.fingerprint import fingerprint_of, graph_changes, step_graph

DEFAULT_LOCK = Path("tasksaga.lock.json")
FORMAT = 1


class LockError(ValueError):
    pass


def read_lock(path: Path) -> dict[str, dict[str, Any]]:
    """{type: {version (str): {"fingerprint": ..., "graph": ...}}}."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise LockError(f"TS142 error: lock file {path} cannot be read: {error}") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT \
            or not isinstance(document.get("tasks"), dict):
        raise LockError(f"TS142 error: lock file {path} is not a tasksaga lock file (format "
                        f"{FORMAT}); write it with tasksaga-check --update-lock")
    tasks: dict[str, dict[str, Any]] = document["tasks"]
    return tasks


def lock_diagnostics(definition: TaskDefinition,
                     locked: dict[str, dict[str, Any]]) -> list[Diagnostic]:
    graph = step_graph(definition)
    now = fingerprint_of(graph)
    entry = locked.get(definition.name, {}).get(str(definition.version))
    where = f"{definition.name} version {definition.version}"
    if entry is None:
        return [Diagnostic("TS141", f"{where} is not in the lock file: run tasksaga-check "
                                    "--update-lock and commit the file", "warning")]
    if entry.get("fingerprint") == now:
        return []
    changes = graph_changes(entry.get("graph", {}), graph) or ["the graph"]
    return [Diagnostic(
        "TS140",
        f"the step graph of {where} changed without a new version (locked "
        f"{entry.get('fingerprint')}, now {now}): {'; '.join(changes)}. Running tasks of "
        f"version {definition.version} would be decided by a graph their log does not fit: "
        f"declare version={definition.version + 1} (and keep version {definition.version} "
        "deployed while its tasks run), or, if no task of this version runs anywhere, "
        "tasksaga-check --update-lock")]


def write_lock(path: Path, definitions: list[TaskDefinition]) -> None:
    """Record every given definition's graph, keeping the entries of other types/versions."""
    tasks = read_lock(path) if path.exists() else {}
    for definition in definitions:
        graph = step_graph(definition)
        tasks.setdefault(definition.name, {})[str(definition.version)] = {
            "fingerprint": fingerprint_of(graph), "graph": graph}
    document = {"format": FORMAT, "tasks": {name: dict(sorted(versions.items()))
                                            for name, versions in sorted(tasks.items())}}
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")

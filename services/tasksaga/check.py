"""`tasksaga-check MODULE...`: print every diagnostic of the task definitions in the modules.

With a lock file (``--lock PATH``, or ``tasksaga.lock.json`` in the current directory when it
exists), each definition's step graph is compared with the one recorded for its version
(TS140: changed without a new version; TS141: not recorded yet). ``--update-lock`` records
the graphs of the given modules' definitions in the lock file.

Exit status: 0 when every definition is valid, 1 when any has an error, 2 when a module cannot
be imported.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path
from typing import Any

from tasksaga.core.definition import TaskDefinition
from tasksaga.core.diagnostics import diagnose
from tasksaga.core.diagnostics_children import task_links
from tasksaga.lockfile import DEFAULT_LOCK, LockError, lock_diagnostics, read_lock, write_lock


def check_modules(module_names: list[str], out: list[str],
                  locked: dict[str, dict[str, Any]] | None = None,
                  found: list[TaskDefinition] | None = None) -> int:
    status = 0
    checked: list[tuple[str, TaskDefinition]] = []
    for module_name in module_names:
        try:
            module = importlib.import_module(module_name)
        except Exception:
            out.append(f"{module_name}: cannot be imported:\n{traceback.format_exc(limit=3)}")
            return 2
        definitions = [v for v in vars(module).values() if isinstance(v, TaskDefinition)]
        if not definitions:
            out.append(f"{module_name}: no TaskDefinition found")
            status = max(status, 1)
        for definition in definitions:
            checked.append((module_name, definition))
            if found is not None:
                found.append(definition)
            diagnostics = diagnose(definition)
            if locked is not None:
                diagnostics += lock_diagnostics(definition, locked)
            if not diagnostics:
                out.append(f"{module_name}:{definition.name}: ok "
                           f"({len(definition.steps)} steps)")
            for diagnostic in diagnostics:
                out.append(f"{module_name}:{definition.name}: {diagnostic}")
                if diagnostic.severity == "error":
                    status = max(status, 1)
    # Child steps and depends_on across every module given (the set deployed together).
    module_of = {d.name: m for m, d in checked}
    newest = {d.name: d for _, d in sorted(checked, key=lambda md: md[1].version)}
    for task_type, diagnostic in task_links(newest.values()):
        out.append(f"{module_of[task_type]}:{task_type}: {diagnostic}")
        if diagnostic.severity == "error":
            status = max(status, 1)
    return status


def run_check(modules: list[str], lock_path: Path | None = None,
              update_lock: bool = False) -> tuple[int, list[str]]:
    """What ``tasksaga-check`` (and ``tasksaga check``) does: the exit status and the lines
    to print. ``lock_path`` None: ``tasksaga.lock.json`` of the current directory if any."""
    lock = lock_path or DEFAULT_LOCK
    out: list[str] = []
    if update_lock:
        found: list[TaskDefinition] = []
        status = check_modules(modules, out, None, found)
        if status == 0:
            try:
                write_lock(lock, found)
            except LockError as error:
                out.append(str(error))
                status = 1
            else:
                out.append(f"{lock}: recorded {len(found)} definitions")
        return status, out
    locked = None
    if lock_path is not None or lock.exists():
        try:
            locked = read_lock(lock)
        except LockError as error:
            return 1, [str(error)]
    return check_modules(modules, out, locked), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="+", help="importable modules of task definitions")
    parser.add_argument("--lock", type=Path, default=None,
                        help=f"the fingerprint lock file (default: {DEFAULT_LOCK} when it "
                             "exists)")
    parser.add_argument("--update-lock", action="store_true",
                        help="record the definitions' step graphs in the lock file")
    args = parser.parse_args()
    status, out = run_check(args.modules, args.lock, args.update_lock)
    print("\n".join(out))
    return status


if __name__ == "__main__":
    sys.exit(main())

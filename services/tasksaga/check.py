"""`tasksaga-check MODULE...`: print every diagnostic of the task definitions in the modules.

Exit status: 0 when every definition is valid, 1 when any has an error, 2 when a module cannot
be imported.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from tasksaga.core.definition import TaskDefinition
from tasksaga.core.diagnostics import diagnose


def check_modules(module_names: list[str], out: list[str]) -> int:
    status = 0
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
            diagnostics = diagnose(definition)
            if not diagnostics:
                out.append(f"{module_name}:{definition.name}: ok "
                           f"({len(definition.steps)} steps)")
            for diagnostic in diagnostics:
                out.append(f"{module_name}:{definition.name}: {diagnostic}")
                if diagnostic.severity == "error":
                    status = max(status, 1)
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="+", help="importable modules of task definitions")
    args = parser.parse_args()
    out: list[str] = []
    status = check_modules(args.modules, out)
    print("\n".join(out))
    return status


if __name__ == "__main__":
    sys.exit(main())

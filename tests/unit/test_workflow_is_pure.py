"""The workflow driver is pure like decide: no I/O, no clock, no randomness of its own."""

from __future__ import annotations

from pathlib import Path

import tasksaga.workflow
from tests.unit.test_core_is_pure import FORBIDDEN, imported_modules

# context.py turns recorded values into a datetime and a UUID (datetime.fromtimestamp,
# uuid.UUID(int=...)); it reads no clock and draws no randomness: the values come from the
# history or from the random source decide is given.
ALLOWED = {"context.py": {"datetime", "uuid"}}


def test_no_workflow_module_imports_an_io_library_clock_or_randomness() -> None:
    package = Path(tasksaga.workflow.__file__).parent
    offenders = {}
    for path in sorted(package.glob("*.py")):
        allowed = ALLOWED.get(path.name, set())
        bad = {name for name in imported_modules(path) if name not in allowed
               and any(name == f or name.startswith(f + ".") for f in FORBIDDEN)}
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}

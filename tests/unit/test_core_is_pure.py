"""The core performs no I/O and reads no clock or randomness: it imports none of them."""

from __future__ import annotations

import ast
from pathlib import Path

import tasksaga.core

FORBIDDEN = {
    "socket", "ssl", "http", "urllib", "urllib3", "subprocess", "asyncio", "selectors",
    "psycopg", "psycopg_pool", "confluent_kafka", "fastavro", "minio", "fastapi", "starlette",
    "uvicorn", "httpx", "requests", "opentelemetry", "time", "random", "datetime", "uuid",
    "os", "shutil", "tempfile", "threading", "tasksaga.adapters", "tasksaga.api",
    "tasksaga.orchestrator", "tasksaga.worker", "tasksaga.notifier",
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_core_module_imports_an_io_library_clock_or_randomness() -> None:
    core = Path(tasksaga.core.__file__).parent
    offenders = {}
    for path in sorted(core.glob("*.py")):
        bad = {
            name for name in imported_modules(path)
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
        }
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_the_check_catches_an_io_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import psycopg\nfrom time import time\n")
    assert imported_modules(module) == {"psycopg", "time"}

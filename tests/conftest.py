"""Shared fixtures: the real local stack (started when not running) and its settings."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import stack_tool  # noqa: E402


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """Kafka, Postgres and MinIO on loopback; started by tools/stack when not running."""
    stack_tool.up()
    env = stack_tool.env()
    from tasksaga.adapters.migrations import apply_migrations

    apply_migrations(env["TASKSAGA_DATABASE_URL"])
    return env


@pytest.fixture(scope="session")
def database_url(stack_env: dict[str, str]) -> str:
    return stack_env["TASKSAGA_DATABASE_URL"]


@pytest.fixture(scope="session")
def kafka_bootstrap(stack_env: dict[str, str]) -> str:
    return stack_env["TASKSAGA_KAFKA_BOOTSTRAP"]


@pytest.fixture
def topic_prefix() -> Iterator[str]:
    """A fresh topic namespace per test, so tests sharing the broker never see each other."""
    yield f"t{uuid.uuid4().hex[:10]}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What passing tests printed (their figures), when output was captured: under
    pytest-xdist (make test's first pass) nothing else shows it. Their logs stay hidden."""
    printed = [(report.nodeid, text) for report in terminalreporter.stats.get("passed", [])
               if report.when == "call" and (text := "".join(
                   content for name, content in report.sections
                   if name == "Captured stdout call").strip())]
    if not printed:
        return
    terminalreporter.section("what the passing tests printed")
    for nodeid, text in printed:
        terminalreporter.write_line(f"{nodeid}: {text}")

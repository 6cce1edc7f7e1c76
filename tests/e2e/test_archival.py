"""Retention end to end: a task run through the four services is archived with its partition,
its status says where, its audit is refused until `tasksaga archive restore` brings it back,
and then reads exactly as before.

The system runs in a database schema of its own, with partitions of 10 s (so the task's
partition closes within seconds; production uses months), so archiving drops nobody else's log.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from typer.testing import CliRunner

from tasksaga.adapters.archive import Archiver
from tasksaga.adapters.migrations import apply_migrations
from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga.adapters.partitions import list_partitions
from tasksaga.adapters.pg_store import open_pool
from tasksaga.cli.app import app as cli
from tests.e2e.conftest import System, running_system

PERIOD_S = 10


@pytest.fixture(scope="module")
def archival_system(stack_env: dict[str, str]) -> Iterator[System]:
    base = stack_env["TASKSAGA_DATABASE_URL"]
    schema = f"e2e_archival_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{base}?options={quote(f'-csearch_path={schema}')}"
    apply_migrations(url)
    with psycopg.connect(url) as conn, conn.transaction():
        # The migration made this month's partition and the next (empty): without them, the
        # orchestrator's 10 s partitions start now, and the task's partition closes soon.
        conn.execute(", ".join(f"DROP TABLE {p.name}" if i == 0 else p.name
                               for i, p in enumerate(list_partitions(conn))))
    try:
        with running_system(dict(stack_env, TASKSAGA_DATABASE_URL=url),
                            TASKSAGA_EVENT_PARTITION=f"{PERIOD_S}s",
                            TASKSAGA_EVENT_PARTITION_AHEAD_S="120",
                            TASKSAGA_ARCHIVE_BUCKET=f"e2e-archive-{uuid.uuid4().hex[:8]}"
                            ) as system:
            yield system
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _audit(system: System, task_id: str) -> tuple[int, Any]:
    reply = system.client.get(f"/tasks/{task_id}/audit")
    return reply.status_code, reply.json()


def test_an_archived_task_says_where_it_is_and_its_restored_audit_reads_as_before(
        archival_system: System) -> None:
    system, env = archival_system, archival_system.env
    task_id = system.submit_zip({"a.txt": b"alpha\n" * 100}).json()["task_id"]
    assert system.wait_terminal(task_id)["status"] == "Completed"
    code, before = _audit(system, task_id)
    assert code == 200 and before["entries"][0]["event_type"] == "TaskSubmitted"

    objects = MinioObjectStore(env["TASKSAGA_S3_ENDPOINT"], env["TASKSAGA_S3_ACCESS_KEY"],
                               env["TASKSAGA_S3_SECRET_KEY"])
    objects.ensure_bucket(env["TASKSAGA_ARCHIVE_BUCKET"])
    pool = open_pool(env["TASKSAGA_DATABASE_URL"], max_size=2, name="e2e-archiver")
    try:
        archiver = Archiver(pool, objects, env["TASKSAGA_ARCHIVE_BUCKET"])
        deadline = time.monotonic() + 2 * PERIOD_S + 10
        while not (report := archiver.run(timedelta(0))).archived:  # its partition closes
            assert time.monotonic() < deadline, report.lines()
            time.sleep(1)
    finally:
        pool.close()
    assert report.archived[0].tasks == 1

    status = system.status(task_id)
    assert status is not None and status["status"] == "Completed"
    assert status["archived"]["location"] == report.archived[0].location
    assert status["archived"]["restored_at"] is None
    code, refused = _audit(system, task_id)
    assert code == 409 and report.archived[0].location in refused["detail"]

    # Replay reads the archived stream from object storage on request.
    replayed = CliRunner().invoke(cli, ["replay", "task", task_id, "--include-archives"],
                                  env={k: v for k, v in env.items() if k.startswith("TASKSAGA_")})
    assert replayed.exit_code == 0, replayed.output
    assert "TaskCompleted" in replayed.output

    token = system.client.headers["Authorization"].removeprefix("Bearer ")
    result = CliRunner().invoke(cli, ["--url", str(system.client.base_url), "--token", token,
                                      "archive", "restore", task_id])
    assert result.exit_code == 0, result.output
    assert f"events of task {task_id}" in result.output

    deadline = time.monotonic() + 15
    while (audit := _audit(system, task_id))[1].get("entries") != before["entries"]:
        assert time.monotonic() < deadline, audit
        time.sleep(0.2)
    restored = system.status(task_id)
    assert restored is not None and restored["archived"]["restored_at"] is not None
    assert restored["steps"] == status["steps"]

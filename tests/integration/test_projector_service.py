"""tasksaga-projector, the projections in a process of their own: it projects what the
orchestrators append (they then run with TASKSAGA_ORCHESTRATOR_RUN_PROJECTOR=false), answers
its readiness probe, and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from localrun import REPO, local_payload_cipher, service_env
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_store import PostgresEventStore, open_pool
from tasksaga.core import events as ev
from tests.integration.conftest import fresh_database, new_task_id, submitted


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def own_database(stack_env: dict[str, str]) -> Iterator[str]:
    with fresh_database(stack_env, "tasksaga_projector") as url:
        yield url


def test_the_projector_process_projects_appended_events_and_stops_on_sigterm(
    stack_env: dict[str, str], own_database: str, tmp_path: Path,
) -> None:
    pool = open_pool(own_database, max_size=2, name="projector-test")
    store = PostgresEventStore(pool, AvroCodec(cipher=local_payload_cipher()))
    task_id = new_task_id()
    with store.transaction() as tx:
        tx.append(task_id, 0, [submitted(task_id)])
    port = _free_port()
    log = (tmp_path / "projector.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "tasksaga-projector")],
        env=service_env(stack_env, 0, TASKSAGA_DATABASE_URL=own_database,
                        TASKSAGA_METRICS_PORT=str(port), TASKSAGA_PROJECTOR_GATHER_MS="0"),
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        status, ready = None, False
        deadline = time.monotonic() + 30
        while (status is None or not ready) and time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "projector.log").read_text()
            with pool.connection() as conn:
                row = conn.execute("SELECT status, version FROM task_status WHERE task_id = %s",
                                   (task_id,)).fetchone()
            status = row
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready",
                                            timeout=2) as reply:
                    ready = reply.status == 200
            except OSError:
                ready = False
            time.sleep(0.2)
        assert status == ("Running", 1), (tmp_path / "projector.log").read_text()
        assert ready
        cancelled = replace(submitted(task_id), payload=ev.TaskCancelled("by the test", 1),
                            message_id=f"{task_id}:2", version=2)
        with store.transaction() as tx:  # woken by the append's NOTIFY
            tx.append(task_id, 1, [cancelled])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with pool.connection() as conn:
                row = conn.execute("SELECT status, version FROM task_status WHERE task_id = %s",
                                   (task_id,)).fetchone()
            if row == ("Cancelled", 2):
                break
            time.sleep(0.05)
        assert row == ("Cancelled", 2)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        log.close()
        pool.close()
    assert code == 0, (tmp_path / "projector.log").read_text()

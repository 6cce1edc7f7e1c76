"""`make up` / `make down` bookkeeping (tools/local_system.py), without starting anything."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import local_system


@pytest.fixture
def stack_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TASKSAGA_STACK_DIR", str(tmp_path))
    return tmp_path


def test_a_pid_file_of_a_process_that_is_not_the_service_is_not_running(
        stack_dir: Path) -> None:
    (stack_dir / "system").mkdir()
    # This very process (not tasksaga-api): a reused pid that `make down` must not kill.
    (stack_dir / "system" / "api.pid").write_text(f"{os.getpid()}\n")
    assert local_system.running() == {}
    assert local_system.down(stack=False) == 0
    assert not (stack_dir / "system" / "api.pid").exists()


def test_down_stops_the_recorded_service_process_group(stack_dir: Path) -> None:
    # A stand-in whose command line names the service, in its own session like the real ones.
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                "tasksaga-worker"], start_new_session=True)
    try:
        (stack_dir / "system").mkdir()
        (stack_dir / "system" / "worker.pid").write_text(f"{process.pid}\n")
        deadline = time.monotonic() + 10
        while "tasksaga-worker" not in Path(f"/proc/{process.pid}/cmdline").read_text():
            assert time.monotonic() < deadline, "the stand-in never started"
            time.sleep(0.01)  # forked, not exec'd yet
        assert local_system.running() == {"worker": process.pid}
        local_system.down(stack=False)
        assert process.wait(timeout=10) == -15  # SIGTERM
        assert local_system.running() == {}
    finally:
        if process.poll() is None:
            process.kill()


def test_what_up_prints_names_the_api_the_dashboard_and_the_token() -> None:
    lines = "\n".join(local_system.usage_lines("http://127.0.0.1:8000", "/logs"))
    assert "dashboard  http://127.0.0.1:8000/ui" in lines
    assert "export TASKSAGA_URL=http://127.0.0.1:8000" in lines
    assert "tasksaga-token" in lines and "make down" in lines

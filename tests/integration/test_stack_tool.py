"""Tests for tools/stack: status and idempotency against the real local stack, plus checks that
need no servers (missing prerequisites, stale pid files).

The integration tests bring the stack up (installing it on first use, which can take minutes)
and leave it running, as `tools/stack up` would. The down/up cycle runs on a second, throwaway
stack (its own folder and ports), so the shared one keeps serving the other tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK = REPO_ROOT / "tools" / "stack"
sys.path.insert(0, str(REPO_ROOT / "tools"))

import stack_tool  # noqa: E402

FIRST_UP_TIMEOUT_S = 1200  # a cold first run builds MinIO and downloads Kafka
WARM_UP_LIMIT_S = 30.0  # generous: measured well under 5 s on a 2-core machine


def run_stack(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(STACK), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def pids() -> dict[str, object]:
    return {name: info["pid"] for name, info in stack_tool.status().items()}


@pytest.fixture(scope="module")
def stack() -> Iterator[None]:
    done = run_stack("up", timeout=FIRST_UP_TIMEOUT_S)
    assert done.returncode == 0, f"tools/stack up failed:\n{done.stdout}\n{done.stderr}"
    yield


# --------------------------------------------------------------------------------------------
# Against the real stack
# --------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_status_reports_every_server_running(stack: None) -> None:
    done = run_stack("status")

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(stack_tool.SERVICES)
    assert all(line.split()[1] == "running" for line in lines), done.stdout
    for name, info in stack_tool.status().items():
        assert info["running"] is True, name
        assert isinstance(info["pid"], int), name
        assert f"pid {info['pid']}" in done.stdout
        assert f"port {info['port']}" in done.stdout


@pytest.mark.integration
def test_second_up_is_fast_and_leaves_running_servers_alone(stack: None) -> None:
    before = pids()

    started = time.monotonic()
    done = run_stack("up")
    elapsed = time.monotonic() - started

    assert done.returncode == 0, done.stdout + done.stderr
    assert elapsed < WARM_UP_LIMIT_S, f"second up took {elapsed:.1f}s"
    assert done.stdout.count("(already running)") == len(stack_tool.SERVICES), done.stdout
    assert "starting" not in done.stdout
    assert pids() == before


@pytest.mark.integration
def test_servers_answer_real_requests(stack: None) -> None:
    settings = stack_tool.Settings.from_env()

    health = f"http://127.0.0.1:{settings.minio_port}/minio/health/ready"
    with urllib.request.urlopen(health, timeout=5) as response:
        assert response.status == 200

    psql = stack_tool.Postgres(settings).bin("psql")
    url = stack_tool.env(settings)["TASKSAGA_DATABASE_URL"]
    who = subprocess.run(
        [
            psql,
            "-X",
            "-tA",
            url,
            "-c",
            "select current_user, rolsuper, rolcreatedb from pg_roles where rolname = current_user",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert who.stdout.strip() == f"{settings.pg_user}|f|t"

    assert stack_tool.Kafka(settings).check_ready()


@pytest.mark.integration
def test_env_prints_exports_for_the_configured_stack(stack: None) -> None:
    settings = stack_tool.Settings.from_env()
    expected = {
        "TASKSAGA_KAFKA_BOOTSTRAP": f"127.0.0.1:{settings.kafka_port}",
        "TASKSAGA_DATABASE_URL": (
            f"postgresql://{settings.pg_user}:{settings.pg_password}"
            f"@127.0.0.1:{settings.pg_port}/{settings.pg_db}"
        ),
        "TASKSAGA_S3_ENDPOINT": f"127.0.0.1:{settings.minio_port}",
        "TASKSAGA_S3_ACCESS_KEY": settings.minio_access_key,
        "TASKSAGA_S3_SECRET_KEY": settings.minio_secret_key,
    }

    done = run_stack("env")

    assert done.returncode == 0
    assert stack_tool.env() == expected
    assert done.stdout.splitlines() == [f"export {k}={v}" for k, v in expected.items()]


@pytest.mark.integration
def test_logs_tails_each_server_log(stack: None) -> None:
    for name in stack_tool.SERVICES:
        done = run_stack("logs", name)

        assert done.returncode == 0
        header, *body = done.stdout.rstrip("\n").splitlines()
        assert header == f"==> {stack_tool.Settings.from_env().log_file(name)} <=="
        assert 0 < len(body) <= stack_tool.LOG_TAIL_LINES


@pytest.mark.integration
def test_down_then_up_only_restarts(tmp_path: Path) -> None:
    # Ports below Linux's ephemeral range (32768+), where a client socket could take them.
    env = {
        **os.environ,
        "TASKSAGA_STACK_DIR": str(tmp_path / "stack"),
        "TASKSAGA_KAFKA_PORT": "21092", "TASKSAGA_KAFKA_CONTROLLER_PORT": "21093",
        "TASKSAGA_PG_PORT": "21432", "TASKSAGA_MINIO_PORT": "21000",
        "TASKSAGA_MINIO_CONSOLE_PORT": "21001",
    }
    first = run_stack("up", env=env, timeout=FIRST_UP_TIMEOUT_S)
    try:
        assert first.returncode == 0, first.stdout + first.stderr
        assert run_stack("down", env=env).returncode == 0
        stopped = run_stack("status", env=env)
        assert stopped.returncode == stack_tool.EXIT_NOT_ALL_RUNNING
        assert stopped.stdout.count("stopped") == len(stack_tool.SERVICES)

        started = time.monotonic()
        done = run_stack("up", env=env)
        elapsed = time.monotonic() - started

        assert done.returncode == 0, done.stdout + done.stderr
        assert elapsed < 60, f"up after down took {elapsed:.1f}s"
        assert "install" not in done.stdout and "first run" not in done.stdout
        assert run_stack("status", env=env).returncode == 0
    finally:
        run_stack("down", env=env)


# --------------------------------------------------------------------------------------------
# No servers needed
# --------------------------------------------------------------------------------------------


def path_without(tmp_path: Path, program: str) -> str:
    """A PATH with every program of the current PATH except ``program``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = bin_dir / entry.name
            if entry.name != program and not link.exists() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    return str(bin_dir)


def test_missing_java_is_named_with_install_hint_and_exit_2(tmp_path: Path) -> None:
    stack_dir = tmp_path / "stack"
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env.update(PATH=path_without(tmp_path, "java"), TASKSAGA_STACK_DIR=str(stack_dir))
    assert shutil.which("java", path=env["PATH"]) is None

    done = run_stack("up", env=env, timeout=60)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "java" in done.stderr
    assert "apt-get install -y openjdk-17-jre-headless" in done.stderr
    assert not stack_dir.exists(), "nothing may be installed or started without prerequisites"


def test_stale_pid_files_are_ignored_and_cleaned_up(tmp_path: Path) -> None:
    settings = stack_tool.Settings.from_env({"TASKSAGA_STACK_DIR": str(tmp_path)})
    settings.run_dir.mkdir()
    exited = subprocess.Popen(["true"])
    exited.wait()
    not_minio = os.getpid()  # alive, but its command line is not our MinIO's

    for service, pid in (
        (stack_tool.Kafka(settings), exited.pid),
        (stack_tool.Minio(settings), not_minio),
    ):
        pid_file = settings.pid_file(service.name)
        pid_file.write_text(f"{pid}\n")

        assert service.pid() is None
        assert stack_tool.status(settings)[service.name]["running"] is False
        assert pid_file.exists(), "status must not delete pid files (it runs without the lock)"
        service.forget_stale_pid()
        assert not pid_file.exists()

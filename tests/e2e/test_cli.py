"""The ``tasksaga`` command, run as a process against the four services (issue 10, item 5):
ZIPs of uploaded files watched to Completed and to Failed, list/show/audit, a signal, a
cancellation, heartbeat progress, the fold of a task's log with ``replay task``, and an
order in NeedsAttention retried forward."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localrun import BIN, local_payload_keys, local_token
from tests.e2e.conftest import System, running_system

# Exit codes of `watch` (tasksaga.cli.exit_codes; docs/cli.md).
COMPLETED, FAILED, CANCELLED, NEEDS_ATTENTION = 0, 10, 11, 13


@pytest.fixture(scope="module")
def system(stack_env: dict[str, str]) -> Iterator[System]:
    with running_system(stack_env, TASKSAGA_TASK_MODULES=(
            "tasksaga_examples.zip_archive,tasksaga_examples.expense_approval,"
            "tasksaga_examples.order_fulfilment,tests.e2e.live_tasks")) as running:
        yield running


class Cli:
    """Runs the installed ``tasksaga`` script as a user would, with a tenant of its own."""

    def __init__(self, system: System, tmp: Path) -> None:
        self.tenant = f"cli-{uuid.uuid4().hex[:8]}"
        token = local_token(tenant=self.tenant, subject="cli-user",
                            roles=("tasksaga:operator", "approver"),
                            secret=system.env["TASKSAGA_AUTH_HS256_SECRET"])
        self.env = {**os.environ, "TASKSAGA_URL": system.services.api_url,
                    "TASKSAGA_TOKEN": token, "TASKSAGA_CONFIG": str(tmp / "none.toml"),
                    "PYTHONPATH": system.env["PYTHONPATH"], "COLUMNS": "200",
                    "TASKSAGA_DATABASE_URL": system.env["TASKSAGA_DATABASE_URL"],
                    "TASKSAGA_PAYLOAD_KEYS": local_payload_keys()}

    def run(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "tasksaga"), *args], env=self.env, text=True,
                              capture_output=True, timeout=timeout_s)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(BIN / "tasksaga"), *args], env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def finish(self, process: subprocess.Popen[str], timeout_s: float = 60
               ) -> subprocess.CompletedProcess[str]:
        stdout, stderr = process.communicate(timeout=timeout_s)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def json(self, *args: str) -> Any:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def submit(self, *args: str) -> str:
        task_id: str = self.json("submit", *args)["task_id"]
        return task_id


@pytest.fixture(scope="module")
def cli(system: System, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(system, tmp_path_factory.mktemp("cli"))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("files")
    paths = [folder / "notes.txt", folder / "data.bin"]
    paths[0].write_text("tasksaga cli e2e\n" * 100)
    paths[1].write_bytes(os.urandom(1_500_000))
    return paths


def accepted_id(output: str) -> str:
    return output.split("accepted: task ")[1].split()[0]


def test_zips_submitted_with_files_are_watched_to_their_outcome_then_listed_and_audited(
        cli: Cli, files: list[Path]) -> None:
    # Both at once (each `tasksaga` is its own process): one completes, one fails.
    completing = cli.start("submit", "CreateZip", "--file", f"files={files[0]}", "--file",
                           f"files={files[1]}", "--field", "archive_name=cli.zip", "--watch")
    failing = cli.start("submit", "CreateZip", "-f", f"files={files[0]}", "-F",
                        "fail_at_last_step=true", "-w")
    done, failed = cli.finish(completing), cli.finish(failing)
    assert done.returncode == COMPLETED, done.stdout + done.stderr
    assert "uploading notes.txt, data.bin" in done.stderr  # the upload's progress bar
    assert "1.5/1.5 MB" in done.stderr
    assert "step CreateArchive completed (attempt 1)" in done.stdout
    assert "ended Completed" in done.stdout
    assert failed.returncode == FAILED, failed.stdout + failed.stderr
    assert "ended Failed" in failed.stdout
    done_id, failed_id = accepted_id(done.stdout), accepted_id(failed.stdout)

    # This tenant's two tasks, newest first, in pages of one.
    listed = cli.json("list", "--type", "CreateZip", "--page-size", "1", "--all")
    assert {t["task_id"]: t["status"] for t in listed} == {done_id: "Completed",
                                                           failed_id: "Failed"}
    assert len(listed) == 2
    trail = cli.json("audit", failed_id)
    assert [e["event_type"] for e in trail][-1] == "TaskFailed"
    assert "StepCompensated" in [e["event_type"] for e in trail]
    table = cli.run("show", failed_id)
    assert any(line.split()[:2] == ["CreateArchive", "Compensated"]
               for line in table.stdout.splitlines()), table.stdout


def test_a_signal_completes_the_approval(cli: Cli) -> None:
    task_id = cli.submit("ExpenseApproval", "--data",
                         json.dumps({"expense_id": "e-cli-1", "amount_cents": 1200}))
    approval = json.dumps({"approver": "cli-user", "approved": True})
    sent = cli.json("signal", task_id, "Approve", "--data", approval, "--signal-id", "s-1")
    assert (sent["status"], sent["signal_id"]) == ("signal accepted", "s-1")
    watched = cli.run("watch", task_id, "--json", "--timeout", "30")
    assert watched.returncode == COMPLETED, watched.stdout + watched.stderr
    messages = [json.loads(line) for line in watched.stdout.splitlines()]
    assert "signal 'Approve' received (id s-1) from cli-user" in [
        m.get("summary") for m in messages]
    assert messages[-1] == {"type": "end", "task_id": task_id, "status": "Completed",
                            "version": messages[-2]["version"]}


def test_a_cancelled_task_is_watched_to_cancelled(cli: Cli) -> None:
    task_id = cli.submit("Ticker", "--data", '{"ticks": 20, "interval_s": 0.2}')
    cancelled = cli.run("cancel", task_id, "--reason", "from the cli", "--watch")
    assert cancelled.returncode == CANCELLED, cancelled.stdout + cancelled.stderr
    assert "cancellation requested" in cancelled.stdout
    assert "from the cli" in cancelled.stdout and "ended Cancelled" in cancelled.stdout


def test_watch_shows_heartbeat_progress_and_replay_folds_the_log(cli: Cli) -> None:
    done = cli.run("submit", "Ticker", "--data", '{"ticks": 4, "interval_s": 0.3}', "--watch")
    assert done.returncode == COMPLETED, done.stdout + done.stderr
    bar = next(line for line in done.stdout.splitlines() if line.startswith("Count "))
    assert "100%" in bar and "tick 4 of 4" in bar, done.stdout  # the last heartbeat's note
    fold = cli.json("replay", "task", accepted_id(done.stdout))
    assert [e["event_type"] for e in fold["events"]][-1] == "TaskCompleted"
    assert fold["events"][-1]["steps"] == {"Count": "Completed", "Finish": "Completed"}
    assert fold["state"]["status"] == "Completed"


def test_needs_attention_exits_13_and_retry_watch_follows_the_forward_retry(cli: Cli) -> None:
    order = {"order_id": "o-cli-1", "sku": "MUG-42", "quantity": 1, "amount_cents": 999,
             "email": "ada@example.com", "outage_at": "Notify", "outage_attempts": 3}
    stuck = cli.run("submit", "FulfilOrder", "--data", json.dumps(order), "--watch",
                    "--no-events")
    assert stuck.returncode == NEEDS_ATTENTION, stuck.stdout + stuck.stderr
    retried = cli.run("retry", accepted_id(stuck.stdout), "--watch")  # forward, from status
    assert retried.returncode == COMPLETED, retried.stdout + retried.stderr
    assert "forward retry requested" in retried.stdout
    assert "ended Completed" in retried.stdout

"""Chains across the four processes: a linear saga runs on one step command, every transition
recorded; a worker killed inside a chain is resumed at the step it was running, nothing before
it run again; with chains off, every step gets its own command."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from localrun import local_payload_cipher
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.core import events as ev
from tests.e2e.checks import log_problems
from tests.e2e.conftest import System, running_system

MODULE = "tests.e2e.chain_tasks"
STEPS = ("A", "B", "C", "D")


@pytest.fixture(scope="module")
def chained(stack_env: dict[str, str]) -> Iterator[System]:
    with running_system(stack_env, TASKSAGA_TASK_MODULES=MODULE) as running:
        yield running


def _submit(system: System, ledger: Path, hold_b_s: float = 0.0) -> str:
    reply = system.client.post("/tasks/ChainedSaga",
                               json={"ledger": str(ledger), "hold_b_s": hold_b_s})
    assert reply.status_code == 202, reply.text
    task_id: str = reply.json()["task_id"]
    return task_id


def _dispatches(system: System, task_id: str) -> list[ev.StepDispatched]:
    codec = AvroCodec(cipher=local_payload_cipher())
    with psycopg.connect(system.env["TASKSAGA_DATABASE_URL"]) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE stream_id = %s ORDER BY version",
                            (task_id,)).fetchall()
    events = [codec.decode(bytes(r[0])).payload for r in rows]
    return [e for e in events if isinstance(e, ev.StepDispatched)]


def _runs(ledger: Path, task_id: str) -> Counter[str]:
    lines = ledger.read_text().splitlines() if ledger.exists() else []
    return Counter(line.split(":")[1] for line in lines if line.startswith(f"{task_id}:"))


def test_a_linear_saga_runs_on_one_command_with_every_transition_recorded(
        chained: System, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    task_ids = [_submit(chained, ledger) for _ in range(8)]
    for task_id in task_ids:
        assert chained.wait_terminal(task_id)["status"] == "Completed"
        dispatches = _dispatches(chained, task_id)
        assert [(d.step, d.attempt, d.chained_after) for d in dispatches] == [
            ("A", 1, None), ("B", 1, "A"), ("C", 1, "B"), ("D", 1, "C")]
        assert dispatches[0].chain == ["B", "C", "D"]
        assert len({d.fencing_token for d in dispatches}) == 1  # one lease for the chain
        assert _runs(ledger, task_id) == Counter(STEPS)  # each step once
        steps = chained.status(task_id)["steps"]  # type: ignore[index]
        assert [s["status"] for s in steps] == ["Completed"] * 4
    assert log_problems(chained.env["TASKSAGA_DATABASE_URL"], task_ids) == []
    audit = chained.client.get(f"/tasks/{task_ids[0]}/audit").json()
    summaries = [entry["summary"] for entry in audit["entries"]]
    assert "step B started by the worker of step A (chain, queue chained, attempt 1)" \
        in summaries


def test_a_worker_killed_inside_a_chain_is_resumed_at_the_step_it_was_running(
        chained: System, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    task_id = _submit(chained, ledger, hold_b_s=30.0)
    marker = Path(f"{ledger}.{task_id}.B-started")
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "B never started"
        time.sleep(0.05)
    chained.services.kill("worker", signal.SIGKILL)  # inside B, A's result sent
    killed = time.monotonic()
    chained.services.start("worker")
    assert chained.wait_terminal(task_id, timeout_s=90)["status"] == "Completed"
    resumed_in = time.monotonic() - killed
    runs = _runs(ledger, task_id)
    assert runs == Counter(STEPS), runs  # A not run again; B run to its end once
    dispatches = _dispatches(chained, task_id)
    # B resumed in its chain (attempt 1, no timeout and no retry), C and D after it.
    assert [(d.step, d.attempt) for d in dispatches] == [("A", 1), ("B", 1), ("C", 1),
                                                          ("D", 1)]
    assert log_problems(chained.env["TASKSAGA_DATABASE_URL"], [task_id]) == []
    print(f"worker kill -9 inside a chain: the task completed {resumed_in:.1f} s after the "
          "kill, B resumed by the new worker, A not re-run")


def test_with_chains_off_every_step_gets_its_own_command(
        stack_env: dict[str, str], tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    with running_system(stack_env, TASKSAGA_TASK_MODULES=MODULE,
                        TASKSAGA_ORCHESTRATOR_CHAIN_STEPS="false") as system:
        task_id = _submit(system, ledger)
        assert system.wait_terminal(task_id)["status"] == "Completed"
        dispatches = _dispatches(system, task_id)
    assert [(d.step, d.chain, d.chained_after) for d in dispatches] == [
        (name, [], None) for name in STEPS]
    assert len({d.fencing_token for d in dispatches}) == 4
    assert _runs(ledger, task_id) == Counter(STEPS)

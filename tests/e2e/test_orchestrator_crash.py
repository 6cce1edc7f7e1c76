"""kill -9 of the orchestrator with 50 tasks in flight: every task still finishes, once."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg

from localrun import REPO
from tests.e2e.checks import log_problems
from tests.e2e.conftest import System
from tests.e2e.orchestrator_kill import submit_killing_the_orchestrator

TASKS = 50


def _first_event_after(database_url: str, moment: datetime, timeout_s: float) -> datetime:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT min(recorded_at) FROM events WHERE recorded_at > %s",
                               (moment,)).fetchone()
            if row is not None and row[0] is not None:
                return row[0]  # type: ignore[no-any-return]
            time.sleep(0.05)
    raise AssertionError("the restarted orchestrator appended nothing")


def test_a_killed_orchestrator_resumes_and_every_task_ends_exactly_once(system: System) -> None:
    accepted, killed_at = submit_killing_the_orchestrator(system, TASKS, kill_after=10,
                                                          workers=6)
    time.sleep(1.0)

    restarted_at = datetime.now(UTC)
    started = time.monotonic()
    system.services.start("orchestrator")
    resumed_at = _first_event_after(system.env["TASKSAGA_DATABASE_URL"], restarted_at, 60)
    statuses = [system.wait_terminal(task_id, timeout_s=120) for task_id in accepted]
    all_done_s = time.monotonic() - started

    assert len(accepted) == TASKS
    assert [s["status"] for s in statuses] == ["Completed"] * TASKS
    assert log_problems(system.env["TASKSAGA_DATABASE_URL"], accepted) == []
    resume_s = (resumed_at - restarted_at).total_seconds()
    figures = (f"orchestrator kill -9 at {killed_at.isoformat()}: resumed appending "
               f"{resume_s:.2f} s after restart; all {TASKS} tasks terminal "
               f"{all_done_s:.2f} s after restart\n")
    (REPO / ".run").mkdir(exist_ok=True)
    with (REPO / ".run" / "e2e-figures.txt").open("a") as out:
        out.write(figures)
    print(figures)

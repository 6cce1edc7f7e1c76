"""R1: the orchestrator dies by SIGKILL at named points, again and again, under load.

Each life of the orchestrator is started with one fault point armed for a random hit
(TASKSAGA_FAULT_POINTS, services/tasksaga/adapters/faults.py): after its batch's events were
appended but not committed, after they committed but before anything was published or the
offsets were stored, and after the relay published but before it deleted its outbox rows.
Every accepted task must still end, its log without a duplicated transition, and the
projections must equal the fold of the log.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.chaos.harness import chaos_system, figure, not_terminal, percentile, pick

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

POINTS = ("after_append_before_commit", "after_append_before_produce",
          "after_produce_before_delete")


def test_orchestrator_killed_at_fault_points_loses_nothing_and_repeats_nothing(
    stack_env: dict[str, str],
) -> None:
    kills = pick(reduced=4, full=50)
    rng = random.Random(1)
    resume_s: list[float] = []
    external_kills = 0
    with chaos_system(stack_env) as chaos:
        with chaos.load(rate_per_s=6.0, sleep_ms=20):
            time.sleep(2.0)
            chaos.services.kill("orchestrator")
            for index in range(kills + 1):
                armed = index < kills  # the last life is clean: it finishes the work
                restarted = time.time()
                fault = f"{POINTS[index % len(POINTS)]}:kill@{rng.randint(2, 12)}"
                chaos.services.start("orchestrator",
                                     {"TASKSAGA_FAULT_POINTS": fault} if armed else {})
                resumed = None
                deadline = time.monotonic() + 60
                while resumed is None and time.monotonic() < deadline:
                    resumed = chaos.first_event_after(restarted, timeout_s=0.5)
                    if chaos.services.processes["orchestrator"].poll() is not None:
                        break  # died at its point before its first commit
                if resumed is not None:
                    resume_s.append(resumed - restarted)
                else:
                    assert armed, "the last, clean orchestrator appended nothing within 60 s"
                if armed and not chaos.wait_exit("orchestrator", timeout_s=30):
                    external_kills += 1  # the point was not hit often enough: kill it anyway
                    chaos.kill("orchestrator")
        accepted = list(chaos.accepted)
        statuses = chaos.settle(accepted, timeout_s=180)
        not_completed = {t: s for t, s in statuses.items() if s != "Completed"}
        stuck = not_terminal(statuses)
        log = chaos.log_problems(accepted)
        projections = chaos.projection_mismatches(accepted)
        ledger = chaos.ledger(accepted)

    lost = sum(1 for s in statuses.values() if s == "missing")
    figure("R1", kills=kills, self_kills=kills - external_kills, tasks=len(accepted),
           lost=lost, not_terminal=len(stuck), not_completed=len(not_completed),
           log_problems=len(log),
           projection_mismatches=len(projections), refused=len(chaos.refused),
           resume_p50_s=percentile(resume_s, 0.5), resume_p95_s=percentile(resume_s, 0.95),
           step_reexecutions=ledger.reexecutions())
    assert lost == 0
    assert stuck == {}, f"accepted tasks that never ended: {list(stuck.items())[:5]}"
    assert not_completed == {}, f"{dict(list(not_completed.items())[:5])}"
    assert log == []
    assert projections == []
    assert chaos.refused == []

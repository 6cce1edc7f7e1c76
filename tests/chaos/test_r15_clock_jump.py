"""R15: the orchestrator's wall clock jumps an hour forward, then an hour back, mid-run.

Its steps take seconds against a 600 s step timeout: only a clock compared across processes,
or a deadline kept in wall-clock time across the jump, can fire a timeout here. The jump is
injected into the orchestrator alone (TASKSAGA_CLOCK_JUMP, read by adapters/clock.py); the
worker, the API and Postgres keep the true time.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.harness import Chaos, chaos_system, figure, not_terminal, pick

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

HOUR_MS = 3_600_000


def _run_with_jump(chaos: Chaos, offset_ms: int, tasks: int) -> list[str]:
    """Restart the orchestrator so that its clock jumps by ``offset_ms`` 3 s after start-up,
    with tasks whose steps are dispatched on both sides of the jump."""
    chaos.kill("orchestrator")
    chaos.services.start("orchestrator", {"TASKSAGA_CLOCK_JUMP": f"{offset_ms}@3"})
    ids = chaos.submit_many(tasks, task_type="ChaosSlowSaga", sleep_ms=1500)
    time.sleep(5.0)
    ids += chaos.submit_many(tasks, task_type="ChaosSlowSaga", sleep_ms=1500)
    return ids


def test_a_clock_jump_of_an_hour_fires_no_timeout_and_no_compensation(
    stack_env: dict[str, str],
) -> None:
    tasks = pick(reduced=6, full=30)
    with chaos_system(stack_env) as chaos:
        forward = _run_with_jump(chaos, +HOUR_MS, tasks)
        forward_status = chaos.settle(forward, timeout_s=120)
        backward = _run_with_jump(chaos, -HOUR_MS, tasks)
        backward_status = chaos.settle(backward, timeout_s=120)
        every = forward + backward
        spurious = chaos.step_failures(every, "StepTimedOut")
        compensations = chaos.events_of_type(every, "CompensationStarted")
        outcomes = {**forward_status, **backward_status}
        log = chaos.log_problems([t for t in every if not not_terminal({t: outcomes[t]})])

    not_completed = {t: s for t, s in outcomes.items() if s != "Completed"}
    figure("R15", tasks=len(every), spurious=spurious, compensations=compensations,
           forward_not_completed=sum(1 for t in forward if outcomes[t] != "Completed"),
           backward_not_completed=sum(1 for t in backward if outcomes[t] != "Completed"))
    assert spurious == 0, f"{spurious} step timeouts fired by a clock jump"
    assert compensations == 0
    assert not_completed == {}
    assert log == []

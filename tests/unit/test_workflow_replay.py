"""Replay: a recorded history yields the recorded commands (property), a changed body is
caught and suspends the task, a patch lets new code run beside old tasks, and the live body
is cached so a decision does not replay the history."""

from __future__ import annotations

import random
from itertools import groupby

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasksaga.core.state import TaskStatus
from tasksaga.testing import SagaTestRun
from tasksaga.testing.workflows import (
    ReplayDiverged,
    assert_replays,
    history_commands,
    restart_orchestrator,
)
from tasksaga.workflow.commands import Divergence
from tasksaga.workflow.replay import replay
from tests.unit import workflow_samples as samples
from tests.unit.workflow_program import PROGRAM_OPS, Program, program_child, program_flow
from tests.unit.workflow_samples import Out, Req, loop_flow, switch_flow


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.sampled_from(PROGRAM_OPS), min_size=1, max_size=8),
       failures=st.lists(st.integers(0, 3), min_size=8, max_size=8),
       seed=st.integers(0, 2**16))
def test_replaying_any_prefix_of_a_recorded_history_yields_the_recorded_commands(
        ops: list[str], failures: list[int], seed: int) -> None:
    run = SagaTestRun(program_flow, program_child, jitter=random.Random(seed).random())
    for index, times in enumerate(failures):
        if times:
            run.faults.fail(f"op{index}", times=times)
    if failures[0]:  # the children's step, failed as often (twice or more: the child fails)
        run.faults.fail("Grow", times=failures[0])
    task = run.submit(Program(ops=ops), task_type="WfProgram")
    assert task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED)
    envelopes = task.envelopes
    recorded = [(r.kind, r.name) for r in history_commands(task)]
    # One decision's events share their cause: replay up to every decision boundary.
    boundaries, end = [], 0
    for _, group in groupby(envelopes, key=lambda e: e.causation_id):
        end += len(list(group))
        boundaries.append(end)
    for end in boundaries:
        prefix = envelopes[:end]
        driver = replay(program_flow, [e.payload for e in prefix],
                        [e.occurred_at_ms for e in prefix], random.Random(0).random)
        assert not isinstance(driver.outcome, Divergence), driver.outcome
        assert [(c.kind, c.name) for c in driver.issued] == recorded[:len(driver.issued)]
    assert [(c.kind, c.name) for c in driver.issued] == recorded


def test_a_changed_body_is_caught_on_replay_and_suspends_the_task_until_fixed() -> None:
    samples.VARIANT.update(second="flaky", patched=False)
    run = SagaTestRun(switch_flow)
    try:
        old = run.submit(Req(n=1), settle=False)  # waits for signal "go" after flaky
        samples.VARIANT.update(second="slow")  # a deployment that changed the second step
        restart_orchestrator(run)
        run.signal("go", task_id=old.task_id)
        old.assert_status(TaskStatus.NEEDS_ATTENTION)
        reason = old.state.end_reason or ""
        assert "non-determinism at await #2 (switch_flow line" in reason
        assert "the history records step 'flaky', the deployed code issued step 'slow'" in reason
        assert "retry-forward" in reason
        # The fix: the new path behind a patch marker; the old task replays the old path.
        samples.VARIANT.update(patched=True, second="flaky")
        assert_replays(switch_flow, old)
        run.retry_forward(old.task_id)
        old.assert_completed()
        assert ("slow", 1) not in old.dispatched
        new = run.submit(Req(n=1), settle=False)
        run.signal("go", task_id=new.task_id)
        new.assert_completed()
        assert ("slow", 1) in new.dispatched and ("flaky", 1) not in new.dispatched
    finally:
        samples.VARIANT.update(second="flaky", patched=False)


def test_assert_replays_names_the_await_that_diverged() -> None:
    samples.VARIANT.update(second="flaky", patched=False)
    run = SagaTestRun(switch_flow)
    try:
        task = run.submit(Req(n=1), settle=False)
        samples.VARIANT.update(second="slow")
        try:
            assert_replays(switch_flow, task)
        except ReplayDiverged as diverged:
            assert "await #2" in str(diverged) and "step 'flaky'" in str(diverged)
        else:
            raise AssertionError("the changed body replayed without a divergence")
    finally:
        samples.VARIANT.update(second="flaky", patched=False)


def test_the_live_body_is_cached_so_no_decision_replays_the_history() -> None:
    run = SagaTestRun(loop_flow)
    task = run.submit(Req(n=200))
    task.assert_completed()
    assert task.response(Out).values == [200]
    counters = run.orchestrator.workflows.counters
    assert counters.replays == 0 and counters.hits >= 200


def test_a_restart_replays_the_history_once_then_runs_from_memory() -> None:
    run = SagaTestRun(loop_flow)
    run.faults.hang("flaky", times=1)  # the first step waits for its timeout
    task = run.submit(Req(n=50), settle=False)
    restart_orchestrator(run)
    run.run_until_settled()
    task.assert_completed()
    assert run.orchestrator.workflows.counters.replays == 1
    assert len(task.dispatched) == 51  # the hung attempt, its retry, 49 more: none re-run


def test_the_golden_history_replay_catches_a_changed_workflow_body() -> None:
    import json as _json
    from pathlib import Path

    from tasksaga.testing.harness import _codec
    from tasksaga.testing.histories import replay as replay_history
    from tasksaga.workflow import WorkflowContext, workflow
    from tasksaga_examples.order_fulfilment import OrderRequest, OrderResponse
    from tasksaga_examples.order_workflow import charge_card, place_order

    @workflow("PlaceOrderWorkflow", queue="orders", request=OrderRequest,
              response=OrderResponse, steps=[charge_card])
    async def charge_first(wf: WorkflowContext, order: OrderRequest) -> OrderResponse:
        await wf.step(charge_card, order)  # the order of the first two steps swapped
        raise AssertionError("never reached in the replay")

    path = Path(__file__).parents[1] / "fixtures" / "histories" / "workflows" / "order_success.json"
    history = _json.loads(path.read_text())
    assert replay_history(history, [place_order], _codec()) == []
    problems = replay_history(history, [charge_first], _codec())
    assert problems[0].startswith("decision 0 (SubmitTask): events")
    assert any("WorkflowDiverged" in p for p in problems)


def test_a_request_the_deployed_model_cannot_read_suspends_the_task_instead_of_failing() -> None:
    from tasksaga.core import events as ev
    from tasksaga.core import messages as msg
    from tasksaga.core.state import fold
    from tasksaga.workflow.decide import decide_workflow

    recorded: list[ev.TaskEvent] = [
                ev.TaskSubmitted("t-1", "WfSteps", '{"n": "not a number"}', None, None, 0,
                                 None),
                ev.StepDispatched("double", 1, "wf", 0, 1000, 2)]
    driver = replay(samples.steps_flow, recorded, [0, 0], random.Random(0).random)
    decision, _ = decide_workflow(samples.steps_flow, fold(recorded), driver,
                                  msg.StepSucceeded("t-1", "double", 1, '{"value": 2}', 2), 5,
                                  random.Random(0).random)
    assert [type(e).__name__ for e in decision.events] == ["StepCompleted", "WorkflowDiverged"]
    assert decision.state.status is TaskStatus.NEEDS_ATTENTION
    assert "the deployed code issued ValidationError" in (decision.state.end_reason or "")


def test_replaying_before_every_decision_records_the_same_history_as_the_live_body() -> None:
    from tasksaga_examples.order_fulfilment import OrderRequest
    from tasksaga_examples.order_workflow import place_order

    def history(replay_always: bool) -> list[tuple[str, str]]:
        run = SagaTestRun(place_order)
        run.faults.fail("ChargeCard", times=1)
        run.faults.fail("Ship", times=None)
        if replay_always:  # a restart before every message: each decision replays
            handle, fire = run.orchestrator.handle, run.orchestrator.fire_due_timers

            def handle_after_restart(envelope: object) -> None:
                restart_orchestrator(run)
                handle(envelope)  # type: ignore[arg-type]

            def fire_after_restart(limit: int = 100) -> int:
                restart_orchestrator(run)
                return fire(limit)

            run.orchestrator.handle = handle_after_restart  # type: ignore[method-assign]
            run.orchestrator.fire_due_timers = fire_after_restart  # type: ignore[method-assign]
        task = run.submit(OrderRequest(order_id="o-1", sku="SKU-1", quantity=1,
                                       amount_cents=100, email="a@b.c"))
        assert task.status is TaskStatus.FAILED
        if replay_always:
            assert run.orchestrator.workflows.counters.hits == 0
        return [(type(e).__name__, getattr(e, "step", "")) for e in task.events]

    assert history(replay_always=True) == history(replay_always=False)

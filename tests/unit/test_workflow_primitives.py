"""Every workflow primitive, run by the real orchestrator and step runner on the fake clock
(tasksaga.testing): steps, retries, typed failures, sleep, all/any, signals, recorded values,
cancellation with compensation and shield."""

from __future__ import annotations

import uuid
from datetime import datetime

from tasksaga.core import events as ev
from tasksaga.core.state import StepStatus, TaskStatus
from tasksaga.testing import SagaTestRun
from tasksaga.testing.workflows import assert_replays, restart_orchestrator
from tasksaga.workflow.definition import awaits_in_order
from tests.unit.workflow_samples import (
    Approval,
    Out,
    Req,
    cancel_flow,
    catch_flow,
    parallel_flow,
    signal_flow,
    sleep_flow,
    steps_flow,
    uncaught_flow,
    values_flow,
)


def test_steps_run_on_the_worker_with_their_argument_and_return_their_result() -> None:
    run = SagaTestRun(steps_flow)
    task = run.submit(Req(n=3))
    task.assert_completed()
    assert task.response(Out).values == [6, 7]
    assert task.dispatched == [("double", 1), ("flaky", 1)]


def test_a_failed_step_is_retried_by_its_policy_then_returns() -> None:
    run = SagaTestRun(steps_flow)
    run.faults.fail("flaky", times=2)
    task = run.submit(Req(n=1))
    task.assert_completed()
    assert task.dispatched == [("double", 1), ("flaky", 1), ("flaky", 2), ("flaky", 3)]


def test_a_step_failure_is_a_typed_exception_the_body_catches_and_compensates() -> None:
    run = SagaTestRun(catch_flow)
    run.faults.fail("flaky", times=None, error=ValueError("card declined"))
    task = run.submit(Req(n=1))
    task.assert_completed()
    assert task.response(Out).texts == ["flaky", "ValueError", "card declined"]
    assert task.dispatched[-1] == ("undo", 1)
    assert [a.outcome for a in task.attempts if a.step == "flaky"] == ["failed"] * 3


def test_an_uncaught_step_failure_fails_the_task_with_its_error() -> None:
    run = SagaTestRun(uncaught_flow)
    run.faults.fail("flaky", times=None, error=RuntimeError("down"))
    task = run.submit(Req())
    task.assert_status(TaskStatus.FAILED)
    assert task.state.end_reason == "StepFailed: step flaky failed: RuntimeError: down"


def test_sleep_is_a_durable_timer_on_the_clock() -> None:
    run = SagaTestRun(sleep_flow)
    task = run.submit(Req(), settle=False)
    assert task.step_status("sleep") is StepStatus.WAITING
    run.advance(seconds=299)
    assert task.status is TaskStatus.RUNNING
    restart_orchestrator(run)  # the timer is in the store, the body replays
    run.advance(seconds=1)
    task.assert_completed()
    assert task.response(Out).values == [300]


def test_all_runs_steps_in_parallel_and_any_takes_the_first_success() -> None:
    run = SagaTestRun(parallel_flow)
    run.faults.fail("slow", times=None, error=RuntimeError("slow is down"))
    task = run.submit(Req())
    task.assert_completed()
    assert task.response(Out).values == [2, 20, 200]
    dispatched = [e.step for e in task.events if isinstance(e, ev.StepDispatched)]
    completed = [e.step for e in task.events if isinstance(e, ev.StepCompleted)]
    events = [type(e).__name__ + ":" + getattr(e, "step", "") for e in task.events]
    # both members of wf.all are dispatched before either completes
    assert events.index("StepDispatched:double#2") < events.index("StepCompleted:double")
    assert dispatched[:2] == ["double", "double#2"] and "double#3" in completed


def test_any_tells_the_losers_to_stop() -> None:
    run = SagaTestRun(parallel_flow)
    run.faults.hang("slow")
    task = run.submit(Req(), settle=False)
    run.run_now()
    stops = [e for e in task.events if isinstance(e, ev.StepCancellationRequested)]
    assert [s.step for s in stops] == ["slow"]
    task.assert_completed()


def test_a_signal_resumes_the_body_with_its_data_and_a_missing_one_times_out() -> None:
    run = SagaTestRun(signal_flow)
    task = run.submit(Req(), settle=False)
    assert task.step_status("approve") is StepStatus.WAITING
    run.signal("approve", Approval(approved=True, by="ann"))
    assert task.step_status("confirm") is StepStatus.WAITING
    run.run_until_settled()
    assert task.response(Out).texts == ["ann", "True", "SignalTimedOut"]


def test_a_signal_sent_before_the_body_waits_is_kept() -> None:
    run = SagaTestRun(signal_flow)
    task = run.submit(Req(), settle=False)
    run.signal("confirm")  # early: the body waits for "approve" first
    run.signal("approve", Approval(approved=False, by="bob"))
    task.assert_completed()
    assert task.response(Out).texts == ["bob", "False", "confirmed"]


def test_now_random_and_uuid_are_recorded_and_read_back_by_a_replay() -> None:
    run = SagaTestRun(values_flow, jitter=0.25)
    submitted_at = run.clock.now_ms()
    task = run.submit(Req())
    task.assert_completed()
    stamp, fraction, ident = task.response(Out).texts
    recorded = {e.name: e.data_json for e in task.events
                if isinstance(e, ev.WorkflowValueRecorded)}
    assert datetime.fromisoformat(stamp).timestamp() * 1000 == submitted_at
    assert float(fraction) == 0.25 and recorded["random"] == "0.25"
    assert uuid.UUID(ident).version == 4 and recorded["uuid"] == f'"{ident}"'
    assert assert_replays(values_flow, task).outcome is not None  # the same path, to the end


def test_cancellation_during_a_sleep_runs_the_except_compensation() -> None:
    run = SagaTestRun(cancel_flow)
    task = run.submit(Req(label="sleep"), settle=False)
    assert task.step_status("sleep") is StepStatus.WAITING
    run.cancel(reason="customer changed their mind")
    run.run_until_settled()
    task.assert_status(TaskStatus.CANCELLED)
    assert task.dispatched == [("double", 1), ("undo", 1)]
    assert task.state.end_reason == "customer changed their mind"


def test_cancellation_during_a_step_stops_it_and_the_shielded_compensation_finishes() -> None:
    run = SagaTestRun(cancel_flow)
    run.faults.hang("slow")
    task = run.submit(Req(label="step"), settle=False)
    run.cancel()
    run.run_until_settled()
    task.assert_status(TaskStatus.CANCELLED)
    assert [e.step for e in task.events if isinstance(e, ev.StepCancellationRequested)] == [
        "slow"]
    assert task.dispatched[-1] == ("undo", 1) and task.step_status("undo") is StepStatus.COMPLETED


def test_the_task_timeout_cancels_the_body_at_its_await() -> None:
    run = SagaTestRun(cancel_flow)
    task = run.submit(Req(label="sleep"), settle=False)
    run.advance(seconds=300)
    run.run_until_settled()
    task.assert_status(TaskStatus.CANCELLED)
    assert task.state.end_reason == "task timed out after 300 s"
    assert task.dispatched[-1] == ("undo", 1)


def test_the_status_lists_a_workflows_awaits_in_the_order_they_completed() -> None:
    ranks = {"work#10": None, "work#2": None, "pay": 2, "serve": 3, "take": 1}
    assert awaits_in_order(ranks) == ["take", "pay", "serve", "work#2", "work#10"]


def test_any_of_a_signal_and_a_sleep_is_a_deadline_and_the_loser_stops_waiting() -> None:
    from datetime import timedelta

    from tasksaga.workflow import WorkflowContext, workflow

    @workflow("WfDeadline", queue="wf", request=Req, response=Out, signals={"approve": Approval},
              steps=[])
    async def deadline_flow(wf: WorkflowContext, req: Req) -> Out:
        approval = await wf.any(wf.signal("approve", Approval), wf.sleep(timedelta(hours=1)))
        return Out(texts=["approved by " + approval.by if approval else "timed out"])

    run = SagaTestRun(deadline_flow)
    late = run.submit(Req(), settle=False)
    run.advance(seconds=3600)
    late.assert_completed()
    assert late.response(Out).texts == ["timed out"]
    assert late.step_status("approve") is StepStatus.FAILED  # no longer takes the signal
    early = run.submit(Req(), settle=False)
    run.signal("approve", Approval(approved=True, by="ann"), task_id=early.task_id)
    early.assert_completed()
    assert early.response(Out).texts == ["approved by ann"]
    assert early.step_status("sleep") is StepStatus.FAILED


def test_a_cancellation_inside_a_shield_waits_for_the_block_then_interrupts() -> None:
    from tasksaga.workflow import WorkflowContext, workflow
    from tests.unit.workflow_samples import Num, double, slow

    @workflow("WfShield", queue="wf", request=Req, response=Out, steps=[slow, double])
    async def shielded_flow(wf: WorkflowContext, req: Req) -> Out:
        with wf.shield():
            kept = await wf.step(slow, Num(value=5))
        await wf.step(double, kept)  # never reached: the cancellation is raised above
        return Out()

    run = SagaTestRun(shielded_flow)
    # cancel while slow runs: the shielded step goes on and completes
    run.faults.during("slow", lambda ctx: run.cancel(ctx.task_id, "stop"))
    task = run.submit(Req())
    task.assert_status(TaskStatus.CANCELLED)
    assert task.step_status("slow") is StepStatus.COMPLETED
    assert not [e for e in task.events if isinstance(e, ev.StepCancellationRequested)]
    assert ("double", 1) not in task.dispatched


def test_async_helpers_passed_to_all_run_side_by_side_and_replay_alike() -> None:
    from tests.unit.workflow_samples import routines_flow

    run = SagaTestRun(routines_flow)
    task = run.submit(Req())
    task.assert_completed()
    assert task.response(Out).values == [2, 20, 300]  # both sleeps overlapped: 5 min in all
    kinds = [(type(e).__name__, getattr(e, "step", "")) for e in task.events]
    assert kinds.index(("StepDispatched", "double#2")) < kinds.index(("StepCompleted", "double"))
    assert assert_replays(routines_flow, task).outcome is not None

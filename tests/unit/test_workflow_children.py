"""wf.child: a workflow starts a child task (a DSL saga or a workflow) and awaits it, on the
real orchestrator and step runner with the fake clock (tasksaga.testing): the response as the
await's value, a failure as ChildFailed the body catches, cancellation of the parent reaching
the child, explicit compensation, wf.any/wf.all of children, and replay (a restart while the
child runs starts no second child; every prefix of the history replays)."""

from __future__ import annotations

import random
from dataclasses import replace
from itertools import groupby

import pytest

from tasksaga.core import TaskDefinition
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.children import child_task_id
from tasksaga.core.diagnostics import diagnose
from tasksaga.core.diagnostics_children import task_links
from tasksaga.core.state import StepStatus, TaskStatus
from tasksaga.testing import SagaTestRun, TaskRun
from tasksaga.testing.workflows import assert_replays, history_commands, restart_orchestrator
from tasksaga.workflow import WorkflowContext, workflow
from tasksaga.workflow.commands import Divergence, Kind, Recorded
from tasksaga.workflow.decide import decide_workflow
from tasksaga.workflow.definition import WorkflowDefinition
from tasksaga.workflow.driver import WorkflowDriver
from tasksaga.workflow.replay import replay
from tests.unit.workflow_child_samples import (
    ZipIn,
    ZipOut,
    archive_flow,
    by_name_flow,
    dsl_parent,
    first_archive_flow,
    inner_flow,
    outer_flow,
    zip_saga,
)
from tests.unit.workflow_samples import Num, Out, Req

ZIP = "WfCreateZip"


def archive_run() -> SagaTestRun:
    return SagaTestRun(archive_flow, zip_saga)


def child_of(run: SagaTestRun, parent: TaskRun, name: str = ZIP) -> TaskRun:
    return TaskRun(run.store, child_task_id(parent.task_id, name, 1))


def test_a_workflow_awaits_a_saga_child_and_gets_its_response_model() -> None:
    run = archive_run()
    parent = run.submit(Req(n=2), task_type="WfArchive")
    parent.assert_completed()
    assert parent.response(Out) == Out(values=[4, 2], texts=["a+b.zip"])
    child = child_of(run, parent)
    child.assert_completed()
    assert (child.state.parent_task_id, child.state.parent_step) == (parent.task_id, ZIP)
    assert child.state.request_json == '{"files":["a","b"],"wait":false}'
    started = [e for e in parent.events if isinstance(e, ev.ChildTaskStarted)]
    assert [(e.step, e.child_task_id, e.child_task_type) for e in started] == [
        (ZIP, child.task_id, ZIP)]
    assert parent.state.step(ZIP).child_task_id == child.task_id  # the status's children
    assert Recorded(Kind.CHILD, ZIP) in history_commands(parent)
    assert_replays(archive_flow, parent)


def test_a_failed_child_raises_child_failed_with_its_status_which_the_body_catches() -> None:
    run = archive_run()
    run.faults.fail("Seal", times=None, error=RuntimeError("disk full"), retryable=False)
    parent = run.submit(Req(), task_type="WfArchive")
    parent.assert_completed()
    child = child_of(run, parent)
    child.assert_status(TaskStatus.FAILED)
    child.assert_compensated(["Pack"])  # the child undid itself
    texts = parent.response(Out).texts
    assert texts[:3] == ["failed", "Failed", child.task_id]
    assert "disk full" in texts[3]
    assert parent.step_status(ZIP) is StepStatus.FAILED
    assert_replays(archive_flow, parent)


def test_a_child_type_that_is_not_deployed_raises_child_failed_rejected() -> None:
    run = SagaTestRun(by_name_flow, zip_saga)
    parent = run.submit(Req(label="NotDeployedZip"), task_type="WfArchiveByName")
    parent.assert_completed()
    assert parent.response(Out).texts == ["ChildFailed", "ChildTaskRejected"]
    named = run.submit(Req(), task_type="WfArchiveByName")  # by name, response= parses it
    assert named.response(Out).texts == ["c.zip"]


def test_cancelling_the_parent_cancels_the_running_child_and_the_body_compensates() -> None:
    run = archive_run()
    parent = run.submit(Req(label="wait"), task_type="WfArchive", settle=False)
    child = child_of(run, parent)
    assert child.step_status("Hold") is StepStatus.WAITING  # the child sleeps an hour
    run.cancel(parent.task_id)
    run.run_until_settled(parent.task_id, child.task_id)
    parent.assert_status(TaskStatus.CANCELLED)
    child.assert_status(TaskStatus.CANCELLED)
    child.assert_compensated(["Pack"])
    assert parent.dispatched[-1] == ("undo", 1)  # the except block ran, shielded
    asked = [e for e in parent.events if isinstance(e, ev.StepCancellationRequested)]
    assert [e.step for e in asked] == [ZIP]
    ended = [e for e in parent.events if isinstance(e, ev.ChildTaskEnded)]
    assert [e.status for e in ended] == ["Cancelled"]
    assert_replays(archive_flow, parent)


def test_the_parents_timeout_cancels_the_child_like_the_api() -> None:
    timed = replace_timeout(archive_flow, 60)
    run = SagaTestRun(timed, zip_saga)
    parent = run.submit(Req(label="wait"), task_type="WfArchive", settle=False)
    run.advance(seconds=60)
    run.run_until_settled(parent.task_id)
    parent.assert_status(TaskStatus.CANCELLED)
    child_of(run, parent).assert_status(TaskStatus.CANCELLED)


def replace_timeout(definition: WorkflowDefinition, seconds: float) -> WorkflowDefinition:
    return WorkflowDefinition(definition.name, definition.body, queue=definition.queue,
                              request=definition.request_type,
                              response=definition.response_type, timeout_seconds=seconds)


def test_compensate_child_undoes_a_completed_child_in_reverse() -> None:
    run = archive_run()
    parent = run.submit(Req(label="undo"), task_type="WfArchive")
    parent.assert_completed()
    assert parent.response(Out).texts == ["undone", "a+b.zip"]
    child = child_of(run, parent)
    child.assert_status(TaskStatus.CANCELLED)
    assert child.compensation_order == ["Seal", "Pack"]
    assert parent.step_status(ZIP) is StepStatus.COMPENSATED
    assert Recorded(Kind.COMPENSATE, ZIP) in history_commands(parent)
    assert_replays(archive_flow, parent)


def test_a_restart_while_the_child_runs_replays_without_starting_a_second_child() -> None:
    run = archive_run()
    parent = run.submit(Req(label="wait"), task_type="WfArchive", settle=False)
    restart_orchestrator(run)  # kill -9: the parent's body replays on the child's answer
    run.advance(seconds=3600)
    run.run_until_settled(parent.task_id)
    parent.assert_completed()
    assert sum(isinstance(e, ev.ChildTaskStarted) for e in parent.events) == 1
    assert sorted(run.store.stream_ids()) == sorted([parent.task_id,
                                                     child_of(run, parent).task_id])
    assert run.orchestrator.workflows.counters.replays >= 1


def test_any_prefix_of_a_history_with_children_replays_to_its_recorded_commands() -> None:
    for label in ("x", "undo", "wait"):
        run = archive_run()
        run.faults.fail("Seal", times=1)  # a retry inside the child changes nothing here
        parent = run.submit(Req(label=label), task_type="WfArchive", settle=False)
        run.advance(seconds=3600)
        run.run_until_settled(parent.task_id)
        parent.assert_completed()
        envelopes = parent.envelopes
        recorded = [(r.kind, r.name) for r in history_commands(parent)]
        end = 0
        for _, group in groupby(envelopes, key=lambda e: e.causation_id):
            end += len(list(group))
            prefix = envelopes[:end]
            driver = replay(archive_flow, [e.payload for e in prefix],
                            [e.occurred_at_ms for e in prefix], random.Random(0).random)
            assert not isinstance(driver.outcome, Divergence), (label, driver.outcome)
            assert [(c.kind, c.name) for c in driver.issued] == recorded[:len(driver.issued)]


def test_a_body_that_no_longer_starts_the_child_is_caught_as_non_determinism() -> None:
    run = archive_run()
    parent = run.submit(Req(), task_type="WfArchive")
    driver = replay(WorkflowDefinition(  # the same name and request, another body
        "WfArchive", by_name_flow.body, queue="wf", request=Req, response=Out),
        [e.payload for e in parent.envelopes], [e.occurred_at_ms for e in parent.envelopes],
        random.Random(0).random)
    assert isinstance(driver.outcome, Divergence)
    assert driver.outcome.expected == "step 'double'"
    assert driver.outcome.got == f"child {ZIP!r}"


def test_any_and_all_take_child_awaits_and_a_losing_child_is_cancelled() -> None:
    run = SagaTestRun(first_archive_flow, zip_saga)
    parent = run.submit(Req(n=3), task_type="WfFirstArchive")
    parent.assert_completed()
    assert parent.response(Out) == Out(values=[6], texts=["x.zip", "y+z.zip"])
    loser = child_of(run, parent)
    loser.assert_status(TaskStatus.CANCELLED)
    for name in (f"{ZIP}#2", f"{ZIP}#3"):
        child_of(run, parent, name).assert_completed()
    assert_replays(first_archive_flow, parent)


def test_a_workflow_child_reports_to_its_workflow_parent_and_refuses_compensation() -> None:
    run = SagaTestRun(outer_flow, inner_flow)
    parent = run.submit(Req(n=1), task_type="WfOuter")
    parent.assert_completed()
    assert parent.response(Out).values == [4]
    inner = child_of(run, parent, "WfInner")
    assert inner.state.parent_task_id == parent.task_id
    refused = run.submit(Req(n=1, label="undo"), task_type="WfOuter")
    texts = refused.response(Out).texts
    assert texts[0] == "ChildCompensationFailed"
    assert "not compensated by its parent" in texts[1]
    undone = child_of(run, refused, "WfInner")
    undone.assert_completed()  # nothing was undone
    assert undone.audit()[-1] == (f"compensation refused: parent task {refused.task_id} "
                                  "compensates child WfInner: a workflow is not compensated "
                                  "by its parent: undo its effects in its body (try/except), "
                                  "or compensate in the parent")


# -- the pure decide, one message at a time -------------------------------------------------


def _parent_waiting_for_child() -> tuple[SagaTestRun, TaskRun]:
    run = archive_run()
    return run, run.submit(Req(label="wait"), task_type="WfArchive", settle=False)


def test_a_report_of_another_child_or_a_repeated_one_changes_nothing() -> None:
    _, parent = _parent_waiting_for_child()
    state = parent.state
    events = [e.payload for e in parent.envelopes]
    times = [e.occurred_at_ms for e in parent.envelopes]
    child_id = child_task_id(parent.task_id, ZIP, 1)
    done = msg.ChildTaskFinished(parent.task_id, ZIP, child_id, "Completed",
                                 ZipOut(archive="z", count=1).model_dump_json(), None, 5)
    stranger = replace(done, child_task_id=child_task_id(parent.task_id, ZIP, 2))

    def driver() -> WorkflowDriver:
        return replay(archive_flow, events, times, random.Random(0).random)

    nothing, _ = decide_workflow(archive_flow, state, driver(), stranger, 5,
                                 random.Random(0).random)
    assert nothing.events == [] and nothing.commands == []
    first, _ = decide_workflow(archive_flow, state, driver(), done, 5,
                               random.Random(0).random)
    assert [type(e).__name__ for e in first.events] == [
        "ChildTaskEnded", "StepCompleted", "TaskCompleted"]
    again, _ = decide_workflow(archive_flow, first.state, None, done, 6,
                               random.Random(0).random)
    assert again.events == []


def test_cancelling_sends_cancel_task_to_the_child_in_the_same_decision() -> None:
    _, parent = _parent_waiting_for_child()
    driver = replay(archive_flow, [e.payload for e in parent.envelopes],
                    [e.occurred_at_ms for e in parent.envelopes], random.Random(0).random)
    decision, _ = decide_workflow(archive_flow, parent.state, driver,
                                  msg.CancelTask(parent.task_id, "stop", 7), 7,
                                  random.Random(0).random)
    [cancel] = [c for c in decision.commands if isinstance(c, msg.CancelTask)]
    assert cancel.task_id == child_task_id(parent.task_id, ZIP, 1)
    assert "stop" in cancel.reason
    assert [c.step for c in decision.commands if isinstance(c, msg.ExecuteStep)] == ["undo"]


@pytest.mark.parametrize("misuse, message", [
    ("compensate_before_await", "only a child that completed"),
    ("named_like_a_signal", "already a @step, a signal"),
    ("wrong_request", "takes a ZipIn request"),
])
def test_misusing_wf_child_fails_the_task_with_a_clear_message(misuse: str,
                                                               message: str) -> None:
    @workflow(f"WfMisuse{misuse}", queue="wf", request=Req, response=Out, signals={"go": None})
    async def misused(wf: WorkflowContext, req: Req) -> Out:
        if misuse == "compensate_before_await":
            await wf.compensate_child(wf.child(zip_saga, zip_saga.request_type(files=[])))
        elif misuse == "named_like_a_signal":
            await wf.child(req.label, Num(value=1))  # not a literal: TS189 cannot see it
        else:
            await wf.child(zip_saga, Num(value=1))
        return Out()

    run = SagaTestRun(misused, zip_saga)
    task = run.submit(Req(label="go"), task_type=misused.name)
    task.assert_status(TaskStatus.FAILED)
    assert task.state.end_reason is not None and message in task.state.end_reason


# -- diagnostics --------------------------------------------------------------------------------


@workflow("WfBadChildren", queue="wf", request=Req, signals={"go": None})
async def bad_children_flow(wf: WorkflowContext, req: Req) -> None:
    await wf.child("NotDeployedZip", req)
    await wf.child("go", req)
    await wf.child("WfBadChildren", req)
    await wf.child(zip_saga, zip_saga.request_type(files=[]))


def test_child_awaits_named_like_a_signal_or_of_its_own_type_are_reported() -> None:
    found = {d.code: d for d in diagnose(bad_children_flow)}
    assert sorted(found) == ["TS156", "TS189"]
    assert "wf.child('go'): a child await is named after its task type" in str(found["TS189"])
    assert found["TS156"].severity == "warning"


def test_a_child_type_the_deployment_lacks_is_reported_with_the_awaits_line() -> None:
    links = task_links([bad_children_flow, zip_saga])
    assert [(name, d.code) for name, d in links] == [("WfBadChildren", "TS150")] * 2
    assert ("wf.child in bad_children_flow line 3 starts unknown task type 'NotDeployedZip'"
            in str(links[0][1]))
    assert task_links([archive_flow, zip_saga]) == []  # given by its definition: deployed
    [(_, missing)] = task_links([archive_flow])
    assert "unknown task type 'WfCreateZip'" in str(missing)
    stubborn = TaskDefinition("WfCreateZip", queue="zip", request=ZipIn, cancellable=False)
    stubborn.step("Pack", order=1)(lambda ctx: None)
    [(_, warning)] = task_links([archive_flow, stubborn])
    assert (warning.code, warning.severity) == ("TS157", "warning")
    assert "which is not cancellable" in str(warning)


def test_a_child_whose_compensation_fails_raises_child_compensation_failed() -> None:
    run = archive_run()
    run.faults.fail_compensation("Seal", times=None, error=RuntimeError("cannot delete"))
    parent = run.submit(Req(label="undo"), task_type="WfArchive")
    parent.assert_status(TaskStatus.FAILED)  # the body does not catch it here
    child_of(run, parent).assert_status(TaskStatus.COMPENSATION_FAILED)
    reason = parent.state.end_reason or ""
    assert reason.startswith(f"ChildCompensationFailed: step {ZIP} failed: "
                             "ChildTaskCompensationFailed: child task "), reason
    assert parent.step_status(ZIP) is StepStatus.COMPENSATION_FAILED


def test_a_saga_child_step_starts_a_workflow_which_reports_its_response() -> None:
    run = SagaTestRun(dsl_parent, inner_flow)
    parent = run.submit(Req(n=2), task_type="WfDslParent")
    parent.assert_completed()
    assert parent.response(Num) == Num(value=40)  # the workflow doubled 20
    inner = child_of(run, parent, "Inner")
    assert inner.state.parent_task_id == parent.task_id
    assert inner.task_id == parent.state.step("Inner").child_task_id


def test_cancelling_a_workflow_cancels_its_workflow_child_at_its_await() -> None:
    run = SagaTestRun(outer_flow, inner_flow)
    parent = run.submit(Req(label="sleep"), task_type="WfOuter", settle=False)
    inner = child_of(run, parent, "WfInner")
    assert inner.step_status("sleep") is StepStatus.WAITING
    run.cancel(parent.task_id)
    run.run_until_settled(parent.task_id, inner.task_id)
    parent.assert_status(TaskStatus.CANCELLED)
    inner.assert_status(TaskStatus.CANCELLED)
    assert inner.state.end_reason == (f"parent task {parent.task_id}: cancelled: cancelled by "
                                      "the test")
    assert [e.status for e in parent.events if isinstance(e, ev.ChildTaskEnded)] == ["Cancelled"]


def test_a_child_that_completes_after_its_await_failed_is_kept_on_record() -> None:
    run = archive_run()
    run.faults.fail("Seal", times=None, retryable=False)
    parent = run.submit(Req(), task_type="WfArchive")  # the body caught ChildFailed
    assert parent.step_status(ZIP) is StepStatus.FAILED
    late = msg.ChildTaskFinished(parent.task_id, ZIP, child_task_id(parent.task_id, ZIP, 1),
                                 "Completed", '{"archive": "late.zip", "count": 2}', None, 9)
    decision, _ = decide_workflow(archive_flow, parent.state, None, late, 9,
                                  random.Random(0).random)
    ended, surplus = decision.events
    assert isinstance(ended, ev.ChildTaskEnded) and ended.status == "Completed"
    assert surplus == ev.StepSurplusSucceeded(ZIP, 1, late.response_json or "", False, 9)

"""Child steps and depends_on, on the pure core: the parent starts its child through its
commands, the child's end reaches the parent as a message its decide folds, cancelling and
compensating the parent reach the child, and depends_on starts one downstream per completion."""

from __future__ import annotations

from dataclasses import replace

from tasksaga.core import TaskDefinition
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.children import (
    CHILD_REQUEST_ERROR,
    child_task_id,
    downstream_submissions,
    downstream_task_id,
)
from tasksaga.core.decide import decide
from tasksaga.core.state import StepStatus, TaskStatus
from tests.unit.child_sagas import (
    ChildReq,
    ChildResp,
    Family,
    broken_request,
    child_request,
    child_task,
    parent_task,
)
from tests.unit.sagas import Data, Driver, Req


def family(pivot: bool = False, cancellable: bool = True) -> Family:
    child = child_task(pivot=pivot, cancellable=cancellable)
    return Family(parent_task(child), child)


def test_the_child_step_submits_the_child_with_a_request_built_from_earlier_step_data() -> None:
    f = family()
    f.parent.submit()
    f.parent.state = replace(f.parent.state, tenant="acme", submitted_by="alice")
    f.parent.succeed("Hold")
    [submit] = f.sent(f.parent, msg.SubmitTask)
    assert submit.task_id == child_task_id("t1", "Room", 1)
    assert submit.task_type == "Room"
    assert ChildReq.model_validate_json(submit.request_json) == ChildReq(seat="Hold", width=1920)
    assert (submit.parent_task_id, submit.parent_step) == ("t1", "Room")
    assert (submit.tenant, submit.submitted_by) == ("acme", "alice")  # the parent's tenant
    room = f.parent.state.step("Room")
    assert room.status is StepStatus.RUNNING and room.child_task_id == submit.task_id
    assert ev.ChildTaskStarted("Room", 1, submit.task_id, "Room", f.parent.now) in f.parent.events
    assert not f.sent(f.parent, msg.ExecuteStep)[1:]  # Hold only: no worker runs Room


def test_the_child_id_is_derived_so_a_replayed_decision_names_the_same_child() -> None:
    f = family()
    f.parent.submit()
    before = f.parent.state
    hold_done = msg.StepSucceeded("t1", "Hold", 1, Data(value="Hold").model_dump_json())
    first = decide(f.parent.definition, before, hold_done, 5, lambda: 0.0)
    again = decide(f.parent.definition, before, hold_done, 9, lambda: 0.0)
    ids = [[c.task_id for c in d.commands if isinstance(c, msg.SubmitTask)]
           for d in (first, again)]
    assert ids[0] == ids[1] == [child_task_id("t1", "Room", 1)]
    assert child_task_id("t1", "Room", 2) != ids[0][0] != child_task_id("t2", "Room", 1)


def test_a_second_submission_of_the_same_child_records_nothing() -> None:
    f = family()
    submit = f.start_child()
    assert f.child.state.status is TaskStatus.RUNNING
    assert (f.child.state.parent_task_id, f.child.state.parent_step) == ("t1", "Room")
    assert f.child.send(submit).is_empty


def test_the_childs_response_becomes_the_steps_data_and_the_parent_goes_on() -> None:
    f = family()
    f.start_child()
    f.child.succeed("C1")
    assert f.sent(f.child, msg.ChildTaskFinished) == []  # not ended yet
    f.child.succeed("C2")
    [report] = f.sent(f.child, msg.ChildTaskFinished)
    assert (report.task_id, report.step, report.status) == ("t1", "Room", "Completed")
    f.deliver()
    room = f.parent.state.step("Room")
    assert room.status is StepStatus.COMPLETED and room.child_status == "Completed"
    assert ChildResp.model_validate_json(room.data_json or "") == ChildResp(room="room-for-Hold")
    assert f.parent.dispatched() == ["Hold", "Pay"]
    f.parent.succeed("Pay")
    assert f.parent.state.status is TaskStatus.COMPLETED


def test_a_failed_child_fails_its_step_without_retry_and_the_parent_compensates() -> None:
    f = family()
    f.start_child()
    f.child.fail("C1", retryable=False)  # nothing completed in the child: it fails at once
    assert f.child.state.status is TaskStatus.FAILED
    f.deliver()
    room = f.parent.state.step("Room")
    assert room.status is StepStatus.FAILED and room.error_type == "ChildTaskFailed"
    assert f.parent.state.status is TaskStatus.COMPENSATING
    assert f.parent.compensations() == ["Hold"]  # Room's child undid itself


def test_cancelling_the_parent_cancels_the_running_child_and_waits_for_it() -> None:
    f = family()
    f.start_child()
    f.child.succeed("C1")
    f.parent.send(msg.CancelTask("t1", "changed my mind", f.parent.now))
    [cancel] = f.sent(f.parent, msg.CancelTask)
    assert cancel.task_id == f.child.state.task_id
    assert f.parent.compensations() == []  # Hold waits until the child has answered
    f.deliver()  # the child cancels: its running C2 is told to stop
    assert f.child.cancels() == ["C2"]
    f.child.fail("C2", retryable=False, error="StepCancelled")
    assert f.child.compensations() == ["C1"]
    f.child.compensated("C1")
    assert f.child.state.status is TaskStatus.CANCELLED
    f.deliver()
    assert f.parent.state.step("Room").status is StepStatus.FAILED
    assert f.parent.compensations() == ["Hold"]
    f.parent.compensated("Hold")
    assert f.parent.state.status is TaskStatus.CANCELLED


def test_compensating_past_a_completed_child_compensates_it_in_reverse_first() -> None:
    f = family()
    f.start_child()
    f.finish_child()
    f.parent.fail("Pay", retryable=False)
    [undo] = f.sent(f.parent, msg.CompensateTask)
    assert (undo.task_id, undo.parent_task_id) == (f.child.state.task_id, "t1")
    assert f.parent.compensations() == []  # Hold only once the child is undone
    f.deliver()
    assert f.child.state.status is TaskStatus.COMPENSATING
    assert f.child.compensations() == ["C2"]
    f.child.compensated("C2")
    assert f.child.compensations() == ["C2", "C1"]  # reverse order of completion
    f.child.compensated("C1")
    assert f.child.state.status is TaskStatus.CANCELLED
    f.deliver()
    assert f.parent.state.step("Room").status is StepStatus.COMPENSATED
    assert f.parent.compensations() == ["Hold"]
    f.parent.compensated("Hold")
    assert f.parent.state.status is TaskStatus.FAILED


def test_a_child_past_its_pivot_refuses_and_the_parent_waits_for_an_operator() -> None:
    f = family(pivot=True)
    f.start_child()
    f.finish_child()
    f.parent.fail("Pay", retryable=False)
    f.deliver()
    assert f.child.state.status is TaskStatus.COMPLETED
    assert any(isinstance(e, ev.CancellationRefused) for e in f.child.events)
    f.deliver()
    assert f.parent.state.status is TaskStatus.COMPENSATION_FAILED
    assert f.parent.state.step("Room").error_type == "ChildTaskCompleted"
    assert f.parent.compensations() == []  # nothing before Room was undone either


def test_a_child_whose_compensation_failed_fails_the_parents_and_an_operator_retry_reaches_it(
) -> None:
    f = family()
    f.start_child()
    f.finish_child()
    f.parent.fail("Pay", retryable=False)
    f.deliver()
    f.child.send(msg.CompensationAttemptFailed(f.child.state.task_id, "C2", 1, "Boom", "no"))
    assert f.child.state.status is TaskStatus.COMPENSATION_FAILED
    f.deliver()
    assert f.parent.state.status is TaskStatus.COMPENSATION_FAILED
    f.parent.send(msg.RetryCompensation("t1", f.parent.now))
    f.deliver()
    assert f.child.compensations() == ["C2", "C2"]  # the child tries again
    f.child.compensated("C2")
    f.child.compensated("C1")
    f.deliver()
    assert f.parent.state.step("Room").status is StepStatus.COMPENSATED
    assert f.parent.compensations() == ["Hold"]


def test_reports_of_another_child_and_undo_requests_of_another_parent_change_nothing() -> None:
    f = family()
    f.start_child()
    stranger = msg.ChildTaskFinished("t1", "Room", "someone-else", "Completed", "{}", None, 1)
    assert f.parent.send(stranger).is_empty
    f.finish_child()
    assert f.child.send(msg.CompensateTask(f.child.state.task_id, "t9", "undo", 1)).is_empty


def test_a_broken_request_builder_fails_the_child_step_and_starts_nothing() -> None:
    child = child_task()
    driver = Driver(parent_task(child, request=broken_request))
    driver.submit()
    driver.succeed("Hold")
    room = driver.state.step("Room")
    assert room.status is StepStatus.FAILED and room.error_type == CHILD_REQUEST_ERROR
    assert "no seat in the context" in (room.error_message or "")
    assert not any(isinstance(c, msg.SubmitTask) for c in driver.commands)
    assert driver.compensations() == ["Hold"]


# -- depends_on -----------------------------------------------------------------------------------


def downstream(request: type = ChildResp) -> TaskDefinition:
    task = TaskDefinition("Invoice", queue="q", request=request, depends_on="Room")
    task.step("Send", order=1, data=Data)(lambda ctx: Data(value="sent"))
    return task


def test_a_completion_submits_one_downstream_task_with_the_response_as_request() -> None:
    f = family()
    f.start_child()
    f.child.succeed("C1")
    completing = f.child.succeed("C2")
    state = f.child.state
    submissions, refused = downstream_submissions(state, completing.events, [downstream()], 7)
    assert refused == []
    [submit] = submissions
    assert submit.task_id == downstream_task_id(state.task_id, "Invoice")
    assert submit.request_json == state.response_json
    assert (submit.parent_task_id, submit.parent_step) == (state.task_id, None)
    # A redelivered or replayed completion names the same downstream task.
    again, _ = downstream_submissions(state, completing.events, [downstream()], 99)
    assert [s.task_id for s in again] == [submit.task_id]


def test_no_downstream_before_the_completion_nor_when_the_request_refuses_the_response() -> None:
    f = family()
    f.start_child()
    running = f.child.succeed("C1")
    assert downstream_submissions(f.child.state, running.events, [downstream()], 7) == ([], [])
    completing = f.child.succeed("C2")
    submissions, refused = downstream_submissions(f.child.state, completing.events,
                                                  [downstream(request=ChildReq)], 7)
    assert submissions == []
    assert "Invoice not started" in refused[0] and "seat" in refused[0]


def test_a_task_started_by_depends_on_tells_no_parent_when_it_ends() -> None:
    d = Driver(downstream())
    d.send(msg.SubmitTask("d1", "Invoice", ChildResp(room="r").model_dump_json(), None, None,
                          d.now, parent_task_id="t1"))
    d.succeed("Send")
    assert d.state.status is TaskStatus.COMPLETED
    assert not any(isinstance(c, msg.ChildTaskFinished) for c in d.commands)


def test_an_operators_forward_retry_starts_a_new_child_for_the_new_attempt() -> None:
    child = child_task()
    parent = TaskDefinition("Trip", queue="q", request=Req, step_timeout_seconds=30)
    parent.step("Hold", order=1, data=Data, pivot=True)(lambda ctx: Data(value="seat"))
    parent.child_step("Room", order=2, task=child, request=child_request)
    f = Family(parent, child)
    first = f.start_child()
    f.child.fail("C1", retryable=False)
    f.deliver()
    assert f.parent.state.status is TaskStatus.NEEDS_ATTENTION  # past the pivot Hold
    f.parent.send(msg.RetryForward("t1", f.parent.now))
    again = f.sent(f.parent, msg.SubmitTask)[-1]
    assert again.task_id == child_task_id("t1", "Room", 2) != first.task_id
    assert f.parent.state.step("Room").child_task_id == again.task_id
    # The first child's late reports no longer concern the step.
    stale = msg.ChildTaskFinished("t1", "Room", first.task_id, "Completed", "{}", None, 1)
    assert f.parent.send(stale).is_empty


def test_a_child_that_cannot_be_cancelled_finishes_then_is_compensated_by_the_parent() -> None:
    f = family(cancellable=False)
    f.start_child()
    f.parent.send(msg.CancelTask("t1", "changed my mind", f.parent.now))
    f.deliver()
    assert f.child.state.status is TaskStatus.RUNNING  # the child ignored the cancellation
    f.child.succeed("C1")
    f.child.succeed("C2")
    f.deliver()  # its completion completes the step, which the compensation then undoes
    assert f.parent.state.step("Room").status is StepStatus.COMPENSATING
    assert len(f.sent(f.parent, msg.CompensateTask)) == 1
    f.deliver()
    f.child.compensated("C2")
    f.child.compensated("C1")
    f.deliver()
    assert f.parent.compensations() == ["Hold"]
    f.parent.compensated("Hold")
    assert f.parent.state.status is TaskStatus.CANCELLED


def test_a_child_that_completes_after_its_step_failed_is_compensated_not_left_standing(
) -> None:
    child = child_task(pivot=False)
    f = Family(parent_task(child), child)
    f.start_child()
    f.child.succeed("C1")
    # The child ends NeedsAttention (as if past a pivot): the parent's step fails.
    needs = msg.ChildTaskFinished("t1", "Room", f.child.state.task_id, "NeedsAttention", None,
                                  "step C2 failed after the pivot", f.parent.now)
    f.parent.send(needs)
    assert f.parent.state.step("Room").status is StepStatus.FAILED
    f.child.succeed("C2")  # an operator took the child forward: it completes after all
    f.deliver()
    [undo] = f.sent(f.parent, msg.CompensateTask)
    assert undo.task_id == f.child.state.task_id
    f.deliver()
    assert f.child.state.status is TaskStatus.COMPENSATING
    assert f.child.compensations() == ["C2"]

"""The trip booking example in process (the real orchestrator, worker and codec on the test
kit's in-memory ports): a child task across two streams, its compensation chain, and one
depends_on downstream per completion whatever is redelivered."""

from __future__ import annotations

from typing import Any

from tasksaga.core import events as ev
from tasksaga.core.children import child_task_id, downstream_task_id
from tasksaga.core.ports import ConcurrencyConflict
from tasksaga.core.state import TaskStatus
from tasksaga.testing import SagaTestRun, TaskRun
from tasksaga_examples import trip_booking as trips


def new_run() -> SagaTestRun:
    return SagaTestRun(trips.book_trip, trips.book_hotel, trips.issue_itinerary)


def trip(**changes: object) -> trips.TripRequest:
    return trips.TripRequest(trip_id="T1", city="Oslo", nights=2, amount_cents=9900,
                             **changes)


def ledger(run: SagaTestRun, task_id: str) -> list[str]:
    return sorted(key.split("/", 1)[1] for key in run.objects.keys(trips.LEDGER_BUCKET)
                  if key.startswith(f"{task_id}/"))


def test_a_trip_books_its_hotel_as_a_child_and_starts_its_itinerary() -> None:
    run = new_run()
    run.submit(trip(), task_type="BookTrip")
    parent = run.task()
    child = TaskRun(run.store, child_task_id(parent.state.task_id, "Hotel", 1))
    downstream = TaskRun(run.store,
                         downstream_task_id(parent.state.task_id, "IssueItinerary"))
    assert (parent.status, child.status, downstream.status) == (TaskStatus.COMPLETED,) * 3
    booked = trips.TripBooked.model_validate_json(parent.state.response_json or "")
    assert booked.room_id == "room-T1-oslo" and booked.seat_id == "seat-T1"
    assert child.state.parent_task_id == parent.state.task_id
    assert downstream.state.request_json == parent.state.response_json
    assert ledger(run, child.state.task_id) == ["confirmation.json", "room.json"]
    assert ledger(run, downstream.state.task_id) == ["itinerary.json"]


def test_a_failed_charge_compensates_the_completed_child_in_reverse_then_the_seat() -> None:
    run = new_run()
    run.submit(trip(fail_charge=True), task_type="BookTrip")
    parent = run.task()
    child = TaskRun(run.store, child_task_id(parent.state.task_id, "Hotel", 1))
    assert (parent.status, child.status) == (TaskStatus.FAILED, TaskStatus.CANCELLED)
    child_undo = [line for line in child.audit() if "compensated" in line]
    assert child_undo[:2] == ["step ConfirmRoom compensated", "step ReserveRoom compensated"]
    trail = parent.audit()
    assert trail.index("step Hotel compensated") < trail.index("step HoldSeat compensated")
    assert ledger(run, child.state.task_id) == [] == ledger(run, parent.state.task_id)
    # No itinerary for a trip that failed: only the trip and its hotel have streams.
    assert sorted(run.store.stream_ids()) == sorted([parent.state.task_id,
                                                     child.state.task_id])


def test_redelivering_every_command_and_result_starts_no_second_child_or_downstream() -> None:
    run = new_run()
    run.submit(trip(), task_type="BookTrip")
    streams = sorted(run.store.stream_ids())
    lengths = {s: len(run.store.events(s)) for s in streams}
    # Kafka redelivers after a crash (and the outbox relay re-sends what it had produced
    # before it died): every message again, in order.
    for record in run.bus.records():
        if record.topic in (run.topics.task_commands, run.topics.step_results):
            run.orchestrator.handle(run.codec.decode(record.value))
    run.run_now()
    assert sorted(run.store.stream_ids()) == streams  # parent, child, one downstream
    assert {s: len(run.store.events(s)) for s in streams} == lengths


def test_a_child_of_a_type_not_deployed_fails_its_step_instead_of_waiting_for_ever() -> None:
    run = SagaTestRun(trips.book_trip)  # BookHotel is not deployed in this run
    run.submit(trip(), task_type="BookTrip")
    parent = run.task()
    hotel = parent.state.step("Hotel")
    assert parent.status is TaskStatus.FAILED
    assert hotel.error_type == "ChildTaskRejected"
    assert "unknown task type 'BookHotel'" in (hotel.error_message or "")
    parent.assert_compensated(["HoldSeat"])
    assert run.store.stream_ids() == [parent.state.task_id]  # the child never started


def test_a_completion_rolled_back_after_it_was_decided_submits_its_downstream_once() -> None:
    run = new_run()
    write = run.orchestrator._write
    crashed: list[str] = []

    def crash_once_after_completing(tx: Any, before: Any, decision: Any, cause: str,
                                    now: int) -> None:
        write(tx, before, decision, cause, now)  # events and outbox written, not committed
        completed = any(isinstance(e, ev.TaskCompleted) for e in decision.events)
        if completed and decision.state.task_type == "BookTrip" and not crashed:
            crashed.append(decision.state.task_id)
            raise ConcurrencyConflict("the transaction died before its commit")

    run.orchestrator._write = crash_once_after_completing  # type: ignore[method-assign]
    run.submit(trip(), task_type="BookTrip")
    assert crashed == ["task-1"]  # decided twice: rolled back, then committed
    itinerary = downstream_task_id("task-1", "IssueItinerary")
    submits = [r for r in run.bus.records(run.topics.task_commands)
               if run.codec.decode(r.value).task_id == itinerary]
    assert len(submits) == 1
    assert run.task(itinerary).status is TaskStatus.COMPLETED

"""Child tasks and depends_on across the four processes (the trip booking example): a trip
starts its hotel booking as a child task and takes its response; a completed trip starts its
itinerary; a failed charge compensates the completed child in reverse; cancelling the trip
while its child runs cancels the child first."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.checks import log_problems
from tests.e2e.conftest import System, running_system


@pytest.fixture(scope="module")
def trips(stack_env: dict[str, str]) -> Iterator[System]:
    with running_system(stack_env,
                        TASKSAGA_TASK_MODULES="tasksaga_examples.trip_booking") as running:
        yield running


def book(system: System, **options: Any) -> str:
    body = {"trip_id": f"t-{uuid.uuid4().hex[:12]}", "city": "Oslo", "nights": 2,
            "amount_cents": 9900, **options}
    reply = system.client.post("/tasks/BookTrip", json=body)
    assert reply.status_code == 202, reply.text
    task_id: str = reply.json()["task_id"]
    return task_id


def steps(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in status["steps"]}


def audit(system: System, task_id: str) -> list[str]:
    return [e["summary"] for e in system.client.get(f"/tasks/{task_id}/audit").json()["entries"]]


def wait_for(system: System, what: str, probe: Any, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        system.services.check_alive()
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def linked(system: System, task_id: str, key: str) -> list[dict[str, Any]]:
    """The parent's ``children`` or ``downstream`` once each has reached a terminal status."""
    def probe() -> list[dict[str, Any]] | None:
        status = system.status(task_id) or {}
        tasks = status.get(key) or []
        terminal = {"Completed", "Failed", "Cancelled", "CompensationFailed", "NeedsAttention"}
        return tasks if tasks and all(t["status"] in terminal for t in tasks) else None
    found: list[dict[str, Any]] = wait_for(system, f"{key} of {task_id} ended", probe)
    return found


def test_a_trip_books_its_hotel_as_a_child_and_its_completion_starts_the_itinerary(
        trips: System) -> None:
    trip_id = book(trips)
    status = trips.wait_terminal(trip_id)
    assert status["status"] == "Completed", status
    [child] = status["children"]
    assert (child["step"], child["task_type"], child["status"]) == ("Hotel", "BookHotel",
                                                                  "Completed")
    hotel = trips.wait_terminal(child["task_id"])
    # The child's request was built from the trip's request and HoldSeat's data.
    assert hotel["request"]["seat_id"] == steps(status)["HoldSeat"]["data"]["seat_id"]
    assert hotel["parent"] == {"task_id": trip_id, "step": "Hotel", "link": "child"}
    # Its response is the child step's data, and the trip's response reads it.
    assert steps(status)["Hotel"]["data"] == hotel["response"]
    assert status["response"]["room_id"] == hotel["response"]["room_id"]
    [itinerary] = linked(trips, trip_id, "downstream")
    assert (itinerary["task_type"], itinerary["status"]) == ("IssueItinerary", "Completed")
    issued = trips.wait_terminal(itinerary["task_id"])
    assert issued["request"] == status["response"]
    assert issued["parent"] == {"task_id": trip_id, "step": None, "link": "depends_on"}
    assert log_problems(trips.env["TASKSAGA_DATABASE_URL"],
                        [trip_id, child["task_id"], itinerary["task_id"]]) == []


def test_a_failed_charge_compensates_the_completed_child_in_reverse_before_the_seat(
        trips: System) -> None:
    trip_id = book(trips, fail_charge=True)
    status = trips.wait_terminal(trip_id)
    assert status["status"] == "Failed", status
    [child] = linked(trips, trip_id, "children")
    assert child["status"] == "Cancelled"  # completed, then compensated by its parent
    child_trail = audit(trips, child["task_id"])
    assert child_trail.index("task completed") < child_trail.index(
        "step ConfirmRoom compensated") < child_trail.index("step ReserveRoom compensated")
    trail = audit(trips, trip_id)
    assert trail.index("step Hotel compensated") < trail.index("step HoldSeat compensated")
    assert steps(status)["Hotel"]["status"] == "Compensated"
    assert status["downstream"] == []  # a failed trip starts no itinerary
    assert log_problems(trips.env["TASKSAGA_DATABASE_URL"], [trip_id]) == []


def test_cancelling_the_trip_while_its_child_runs_cancels_the_child_first(
        trips: System) -> None:
    trip_id = book(trips, hold_seconds=30)

    def child_confirming() -> str | None:
        children = (trips.status(trip_id) or {}).get("children") or []
        if not children:
            return None
        hotel = trips.status(children[0]["task_id"]) or {"steps": []}
        running = steps(hotel).get("ConfirmRoom", {}).get("status") == "Running"
        return str(children[0]["task_id"]) if running else None

    child_id: str = wait_for(trips, "the child's ConfirmRoom running", child_confirming)
    reply = trips.client.post(f"/tasks/{trip_id}/cancel")
    assert reply.status_code == 202, reply.text
    status = trips.wait_terminal(trip_id)
    assert status["status"] == "Cancelled", status
    hotel = trips.wait_terminal(child_id)
    assert hotel["status"] == "Cancelled"
    assert steps(hotel)["ConfirmRoom"]["status"] == "Failed"  # stopped, never confirmed
    assert steps(hotel)["ReserveRoom"]["status"] == "Compensated"
    trail = audit(trips, trip_id)
    ended = next(i for i, line in enumerate(trail) if "ended Cancelled" in line)
    assert ended < trail.index("step HoldSeat compensated")  # the child answered first
    assert log_problems(trips.env["TASKSAGA_DATABASE_URL"], [trip_id, child_id]) == []

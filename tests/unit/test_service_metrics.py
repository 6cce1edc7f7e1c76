"""Step metrics from committed events: durations from the events' own times, bounded labels."""

from __future__ import annotations

from tasksaga.adapters.service_metrics import DispatchBook, StepObservation, step_observations
from tasksaga.core import events as ev


def test_a_step_duration_runs_from_its_dispatch_to_its_answer_in_the_events() -> None:
    book = DispatchBook()
    assert step_observations(book, "t1", "Zip", [ev.StepDispatched("pack", 1, "zip", 1_000,
                                                                   9_000)]) == []
    found = step_observations(book, "t1", "Zip", [ev.StepCompleted("pack", 1, "{}", 3_500)])
    assert found == [StepObservation("duration", "Zip", "pack", "completed", 2.5)]
    assert len(book) == 0  # answered: forgotten


def test_failures_retries_and_compensations_are_counted_by_outcome() -> None:
    book = DispatchBook()
    step_observations(book, "t1", "Zip", [ev.StepDispatched("pack", 1, "zip", 0, 9)])
    found = step_observations(book, "t1", "Zip", [
        ev.StepFailed("pack", 1, "Boom", "no", True, 400),
        ev.StepRetryScheduled("pack", 2, 900),
        ev.StepFailed("pack", 2, "Boom", "no", False, 950),  # its dispatch was not seen
        ev.StepCompensated("upload", 1, 1_000),
        ev.StepCompensationFailed("store", 1, "Boom", "no", False, 1_100),
    ])
    assert found == [
        StepObservation("duration", "Zip", "pack", "retrying", 0.4),
        StepObservation("failure", "Zip", "pack", "retrying"),
        StepObservation("retry", "Zip", "pack", "scheduled"),
        StepObservation("failure", "Zip", "pack", "failed"),
        StepObservation("compensation", "Zip", "upload", "compensated"),
        StepObservation("compensation", "Zip", "store", "failed"),
    ]


def test_attempts_of_other_tasks_do_not_answer_each_other() -> None:
    book = DispatchBook()
    step_observations(book, "t1", "Zip", [ev.StepDispatched("pack", 1, "zip", 0, 9)])
    assert step_observations(book, "t2", "Zip", [ev.StepCompleted("pack", 1, "{}", 5)]) == []
    assert step_observations(book, "t1", "Zip", [ev.StepCompleted("pack", 2, "{}", 5)]) == []


def test_the_dispatch_book_forgets_the_oldest_past_its_limit() -> None:
    book = DispatchBook(limit=2)
    for task in ("a", "b", "c"):
        book.put((task, "s", 1), 0)
    assert len(book) == 2
    assert book.pop(("a", "s", 1)) is None
    assert book.pop(("c", "s", 1)) == 0


def test_fan_out_instances_are_observed_under_their_for_each_step_each_with_its_duration(
) -> None:
    book = DispatchBook()
    step_observations(book, "t1", "Thumbs", [ev.StepDispatched(f"Each[{n}]", 1, "q", n, 99)
                                             for n in range(3)])
    found = step_observations(book, "t1", "Thumbs", [
        ev.StepCompleted("Each[2]", 1, "{}", 2_002), ev.StepCompleted("Each[0]", 1, "{}", 1_000)])
    assert found == [StepObservation("duration", "Thumbs", "Each", "completed", 2.0),
                     StepObservation("duration", "Thumbs", "Each", "completed", 1.0)]

"""The runs the golden histories are recorded from (tools/record_histories.py): each builds a
SagaTestRun of an example, drives it through a scenario and returns its recorder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from history_standins import video_graph
from pydantic import BaseModel

from tasksaga.core.children import child_task_id, downstream_task_id
from tasksaga.core.definition import TaskDefinition
from tasksaga.testing import SagaTestRun
from tasksaga.testing.histories import HistoryRecorder
from tasksaga_examples.barista import CoffeeOrder, perform_duties
from tasksaga_examples.expense_approval import (
    Approval,
    ExpenseRequest,
    expense,
)
from tasksaga_examples.order_fulfilment import OrderRequest, fulfil_order
from tasksaga_examples.order_workflow import place_order
from tasksaga_examples.page_thumbnails import ThumbnailRequest, page_thumbnails
from tasksaga_examples.trip_booking import TripRequest, book_hotel, book_trip, issue_itinerary
from tasksaga_examples.trip_workflow import plan_trip
from tasksaga_examples.video_pipeline import VideoRequest
from tasksaga_examples.zip_archive import ZipRequest, create_zip
from tests.unit.versioned_sagas import Order, billing

#: Every definition a history may be decided with, by (type, version).
DEFINITIONS: list[TaskDefinition] = [create_zip, fulfil_order, video_graph, expense, billing(1),
                                     billing(2, reserve_name="Hold"),
                                     billing(3, charge_retries=2), book_trip, book_hotel,
                                     issue_itinerary, page_thumbnails, place_order,
                                     perform_duties, plan_trip]
_BY_KEY = {(d.name, d.version): d for d in DEFINITIONS}

Scenario = Callable[[], tuple[SagaTestRun, HistoryRecorder, str]]


Recorded = tuple[SagaTestRun, HistoryRecorder, str]
Step = Callable[[SagaTestRun], None]


def _recorded(definition: TaskDefinition, request: Callable[[SagaTestRun], BaseModel],
              prepare: Step, operate: Step) -> Recorded:
    """One task of ``definition`` recorded: ``prepare`` the run, submit ``request``, then
    ``operate`` on it."""
    run = SagaTestRun(definition)
    recorder = HistoryRecorder(run)
    prepare(run)
    run.submit(request(run))
    operate(run)
    return run, recorder, "task-1"


def _zip(prepare: Step, operate: Step = lambda run: None) -> Recorded:
    return _recorded(create_zip, lambda run: ZipRequest(
        files=[run.upload("a.txt", b"alpha\n"), run.upload("b.txt", b"beta\n")]),
        prepare, operate)


def _order(prepare: Step, operate: Step = lambda run: None) -> Recorded:
    return _recorded(fulfil_order, lambda run: OrderRequest(
        order_id="o-1", sku="SKU-1", quantity=2, amount_cents=1250, email="buyer@example.com"),
        prepare, operate)


def _video(prepare: Step, operate: Step = lambda run: None) -> Recorded:
    return _recorded(video_graph, lambda run: VideoRequest(
        video_file=run.upload("clip.mp4", b"not really a video"), title="clip"),
        prepare, operate)


def _expense(operate: Callable[[SagaTestRun], None], pay_after_s: float | None = None,
             ) -> tuple[SagaTestRun, HistoryRecorder, str]:
    """An expense waiting for its Approve signal (the task is left unsettled: settling would
    skip ahead to the approval's timeout)."""
    run = SagaTestRun(expense)
    recorder = HistoryRecorder(run)
    now = datetime.fromtimestamp(run.clock.now_ms() / 1000, UTC)
    pay_after = None if pay_after_s is None else now + timedelta(seconds=pay_after_s)
    run.submit(ExpenseRequest(expense_id="e-1", amount_cents=1200, pay_after=pay_after),
               settle=False)
    operate(run)
    return run, recorder, "task-1"


def _thumbnails(pages: int, fail_page: int | None = None,
                ) -> tuple[SagaTestRun, HistoryRecorder, str]:
    run = SagaTestRun(page_thumbnails)
    recorder = HistoryRecorder(run)
    run.submit(ThumbnailRequest(document="\f".join(f"page {n}" for n in range(pages)),
                                fail_page=fail_page))
    return run, recorder, "task-1"


def _approve(approved: bool = True, signal_id: str | None = None,
             ) -> Callable[[SagaTestRun], None]:
    def operate(run: SagaTestRun) -> None:
        run.signal("Approve", Approval(approver="ann", approved=approved), signal_id=signal_id)

    return operate


def _cancel_during(step: str) -> Callable[[SagaTestRun], None]:
    def prepare(run: SagaTestRun) -> None:
        run.faults.during(step, lambda ctx: run.cancel(ctx.task_id, "cancelled by the recorder"))
    return prepare


def _versions(operate: Callable[[SagaTestRun], None]) -> tuple[SagaTestRun, HistoryRecorder,
                                                               str]:
    """Billing v1 running when v2 (Reserve renamed) replaces it: the task parks."""
    run = SagaTestRun(billing(1))
    recorder = HistoryRecorder(run)

    def redeploy(ctx: object) -> None:
        run.deploy(_BY_KEY[("Billing", 2)])
        run.retire("Billing", 1)

    run.faults.during("Charge", redeploy)
    run.submit(Order())
    operate(run)
    return run, recorder, "task-1"


def _v1_deployed_again(run: SagaTestRun) -> None:
    run.deploy(_BY_KEY[("Billing", 1)])
    run.migrate(to_version=1)


def _v3_compatible(run: SagaTestRun) -> None:
    run.deploy(_BY_KEY[("Billing", 3)])
    run.migrate(to_version=2)  # refused: v2 lacks the recorded step Reserve
    run.migrate(to_version=3)


def _cancel_refused_then_compensated(run: SagaTestRun) -> None:
    run.cancel()  # refused: no deployed version has v1's compensations
    run.deploy(_BY_KEY[("Billing", 3)])
    run.cancel()
    run.run_until_settled()


def _trip(whose: str, prepare: Callable[[SagaTestRun], None] = lambda run: None,
          **request: object) -> tuple[SagaTestRun, HistoryRecorder, str]:
    """A BookTrip with its BookHotel child and, once it completes, its IssueItinerary
    (depends_on): one run, three streams; ``whose`` history is returned."""
    run = SagaTestRun(book_trip, book_hotel, issue_itinerary)
    recorder = HistoryRecorder(run)
    prepare(run)
    run.submit(TripRequest(trip_id="trip-1", city="Oslo", nights=2, amount_cents=9900,
                           **request), task_type="BookTrip")
    ids = {"trip": "task-1", "hotel": child_task_id("task-1", "Hotel", 1),
           "itinerary": downstream_task_id("task-1", "IssueItinerary")}
    return run, recorder, ids[whose]


def _cancel_trip_during(step: str) -> Callable[[SagaTestRun], None]:
    def prepare(run: SagaTestRun) -> None:
        run.faults.during(step, lambda ctx: run.cancel("task-1", "cancelled by the recorder"))
    return prepare


def _order_workflow(prepare: Callable[[SagaTestRun], None],
                    operate: Callable[[SagaTestRun], None] = lambda run: None,
                    ) -> tuple[SagaTestRun, HistoryRecorder, str]:
    run = SagaTestRun(place_order)
    recorder = HistoryRecorder(run)
    prepare(run)
    run.submit(OrderRequest(order_id="o-1", sku="SKU-1", quantity=2, amount_cents=1250,
                            email="buyer@example.com"))
    operate(run)
    return run, recorder, "task-1"


def _trip_workflow(prepare: Callable[[SagaTestRun], None] = lambda run: None,
                   **options: object) -> tuple[SagaTestRun, HistoryRecorder, str]:
    """PlanTrip (a workflow) awaiting its BookHotel child (wf.child): the parent's history."""
    run = SagaTestRun(plan_trip, book_hotel)
    recorder = HistoryRecorder(run)
    prepare(run)
    run.submit(TripRequest(trip_id="trip-1", city="Oslo", nights=2, amount_cents=9900,
                           **options), task_type="PlanTrip")
    run.run_until_settled()
    return run, recorder, "task-1"


def _barista() -> tuple[SagaTestRun, HistoryRecorder, str]:
    run = SagaTestRun(perform_duties)
    recorder = HistoryRecorder(run)
    run.submit(CoffeeOrder(drink="latte", customer="ann"))
    return run, recorder, "task-1"


def _fail(step: str, **kwargs: object) -> Callable[[SagaTestRun], None]:
    return lambda run: run.faults.fail(step, **kwargs)  # type: ignore[arg-type]


def _both(*prepares: Callable[[SagaTestRun], None]) -> Callable[[SagaTestRun], None]:
    def prepare(run: SagaTestRun) -> None:
        for each in prepares:
            each(run)
    return prepare

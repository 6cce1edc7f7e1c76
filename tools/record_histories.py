"""Record the golden histories under tests/fixtures/histories/ from real in-process runs.

    PYTHONPATH=services:examples:. python tools/record_histories.py [EXAMPLE/SCENARIO ...]

Each scenario runs the real orchestrator and step worker on the in-memory ports
(``tasksaga.testing.SagaTestRun``) with injected failures, and writes every decision of the
task to ``tests/fixtures/histories/<example>/<scenario>.json``. Regenerating is a deliberate
act: the diff of the fixtures is what a reviewer reads to accept that old runs now decide
differently. tests/unit/test_golden_histories.py replays them all.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel

from tasksaga.core.children import child_task_id, downstream_task_id
from tasksaga.core.context import StepContext
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.fingerprint import fingerprint
from tasksaga.core.steps import StepDef, StepHandler
from tasksaga.testing import SagaTestRun
from tasksaga.testing.histories import HistoryRecorder
from tasksaga_examples.barista import CoffeeOrder, perform_duties
from tasksaga_examples.expense_approval import (
    APPROVAL_TIMEOUT_S,
    Approval,
    ExpenseRequest,
    expense,
)
from tasksaga_examples.order_fulfilment import OrderRequest, fulfil_order
from tasksaga_examples.order_workflow import place_order
from tasksaga_examples.page_thumbnails import ThumbnailRequest, page_thumbnails
from tasksaga_examples.trip_booking import TripRequest, book_hotel, book_trip, issue_itinerary
from tasksaga_examples.trip_workflow import plan_trip
from tasksaga_examples.video_pipeline import VideoRequest, video_transcode
from tasksaga_examples.zip_archive import ZipRequest, create_zip
from tests.unit.versioned_sagas import Order, billing


def sample(model: type[BaseModel]) -> BaseModel:
    """A valid instance of ``model`` with placeholder values (defaults where it has them)."""
    values: dict[str, object] = {}
    for name, field in model.model_fields.items():
        if not field.is_required():
            continue
        values[name] = _placeholder(field.annotation)
    return model.model_validate(values)


def _placeholder(annotation: object) -> object:
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set):
        return []
    if origin is dict:
        return {}
    if options and origin is not None:
        return _placeholder(options[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return sample(annotation).model_dump()
    return {str: "placeholder", int: 1, float: 1.0, bool: False}.get(annotation, "placeholder")  # type: ignore[call-overload]


def graph_only(definition: TaskDefinition) -> TaskDefinition:
    """The definition's step graph with stand-in handlers that return empty data: for an
    example whose handlers cannot run in process (the video pipeline runs ffmpeg on presigned
    URLs). Handlers are not part of what decide() reads, and the fingerprint proves the graph
    is the example's own."""
    clone = copy.copy(definition)

    def stand_in(step: StepDef) -> StepHandler:
        def run(ctx: StepContext[BaseModel]) -> BaseModel | None:
            return sample(step.data_type) if step.data_type else None
        return run

    def undo(ctx: StepContext[BaseModel], data: object) -> None:
        return None

    clone._steps = {
        step.name: dataclasses.replace(
            step, handler=stand_in(step) if step.handler else None,
            compensation=undo if step.compensation else None)
        for step in definition.steps}
    response = definition.response_type
    clone.build_response = (lambda ctx: sample(response)) if response else None
    assert fingerprint(clone) == fingerprint(definition)
    return clone


video_graph = graph_only(video_transcode)

HISTORIES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "histories"

#: Every definition a history may be decided with, by (type, version).
DEFINITIONS: list[TaskDefinition] = [create_zip, fulfil_order, video_graph, expense, billing(1),
                                     billing(2, reserve_name="Hold"),
                                     billing(3, charge_retries=2), book_trip, book_hotel,
                                     issue_itinerary, page_thumbnails, place_order,
                                     perform_duties, plan_trip]
_BY_KEY = {(d.name, d.version): d for d in DEFINITIONS}

Scenario = Callable[[], tuple[SagaTestRun, HistoryRecorder, str]]


def _zip(prepare: Callable[[SagaTestRun], None], operate: Callable[[SagaTestRun], None]
         = lambda run: None) -> tuple[SagaTestRun, HistoryRecorder, str]:
    run = SagaTestRun(create_zip)
    recorder = HistoryRecorder(run)
    prepare(run)
    files = [run.upload("a.txt", b"alpha\n"), run.upload("b.txt", b"beta\n")]
    run.submit(ZipRequest(files=files))
    operate(run)
    return run, recorder, "task-1"


def _order(prepare: Callable[[SagaTestRun], None], operate: Callable[[SagaTestRun], None]
           = lambda run: None) -> tuple[SagaTestRun, HistoryRecorder, str]:
    run = SagaTestRun(fulfil_order)
    recorder = HistoryRecorder(run)
    prepare(run)
    run.submit(OrderRequest(order_id="o-1", sku="SKU-1", quantity=2, amount_cents=1250,
                            email="buyer@example.com"))
    operate(run)
    return run, recorder, "task-1"


def _video(prepare: Callable[[SagaTestRun], None], operate: Callable[[SagaTestRun], None]
           = lambda run: None) -> tuple[SagaTestRun, HistoryRecorder, str]:
    run = SagaTestRun(video_graph)
    recorder = HistoryRecorder(run)
    prepare(run)
    run.submit(VideoRequest(video_file=run.upload("clip.mp4", b"not really a video"),
                            title="clip"))
    operate(run)
    return run, recorder, "task-1"


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


SCENARIOS: dict[str, dict[str, tuple[str, Scenario]]] = {
    "zip": {
        "success": ("completes", lambda: _zip(lambda run: None)),
        "failure_with_compensation": (
            "PublishManifest fails for good: CreateArchive and UploadFiles are compensated",
            lambda: _zip(_fail("PublishManifest", retryable=False))),
        "cancellation": ("cancelled while PublishManifest runs",
                         lambda: _zip(_cancel_during("PublishManifest"))),
        "retries": ("CreateArchive fails once, its retry succeeds",
                    lambda: _zip(_fail("CreateArchive", times=1))),
        "timeouts": ("CreateArchive hangs once: its step timeout retries it",
                     lambda: _zip(lambda run: run.faults.hang("CreateArchive", times=1))),
        "compensation_failed": (
            "PublishManifest fails, CreateArchive's compensation fails for good",
            lambda: _zip(_both(_fail("PublishManifest", retryable=False),
                               lambda run: run.faults.fail_compensation("CreateArchive",
                                                                        times=None)))),
        "operator_retry": (
            "CompensationFailed, then an operator's retry of the compensation succeeds",
            lambda: _zip(_both(_fail("PublishManifest", retryable=False),
                               lambda run: run.faults.fail_compensation("CreateArchive",
                                                                        times=3)),
                         lambda run: run.retry_compensation())),
        "operator_skip_compensation": (
            "CompensationFailed at CreateArchive, an operator skips it: UploadFiles is "
            "compensated and the task fails",
            lambda: _zip(_both(_fail("PublishManifest", retryable=False),
                               lambda run: run.faults.fail_compensation("CreateArchive",
                                                                        times=None)),
                         lambda run: run.skip_compensation(
                             "CreateArchive", "archive deleted by hand"))),
        "operator_resolve": (
            "CompensationFailed at CreateArchive, an operator marks the task resolved",
            lambda: _zip(_both(_fail("PublishManifest", retryable=False),
                               lambda run: run.faults.fail_compensation("CreateArchive",
                                                                        times=None)),
                         lambda run: run.resolve("archive bucket cleaned by hand"))),
    },
    "order_fulfilment": {
        "success": ("completes", lambda: _order(lambda run: None)),
        "failure_with_compensation": (
            "Pack fails for good before the pivot: ChargeCard and ReserveStock compensated",
            lambda: _order(_fail("Pack", retryable=False))),
        "cancellation": ("cancelled while ChargeCard runs",
                         lambda: _order(_cancel_during("ChargeCard"))),
        "retries": ("ChargeCard fails twice, its third attempt succeeds",
                    lambda: _order(_fail("ChargeCard", times=2))),
        "timeouts": ("PrintLabel hangs once: its step timeout retries it",
                     lambda: _order(lambda run: run.faults.hang("PrintLabel", times=1))),
        "compensation_failed": (
            "Pack fails, ChargeCard's refund fails for good",
            lambda: _order(_both(_fail("Pack", retryable=False),
                                 lambda run: run.faults.fail_compensation("ChargeCard",
                                                                          times=None)))),
        "operator_retry": (
            "CompensationFailed, then an operator's retry of the compensation succeeds",
            lambda: _order(_both(_fail("Pack", retryable=False),
                                 lambda run: run.faults.fail_compensation("ChargeCard",
                                                                          times=3)),
                           lambda run: run.retry_compensation())),
        "needs_attention": ("Notify fails for good after the pivot Ship: NeedsAttention",
                            lambda: _order(_fail("Notify", retryable=False))),
        "operator_retry_forward": (
            "NeedsAttention, then an operator's forward retry finishes the order",
            lambda: _order(_fail("Notify", times=3), lambda run: run.retry_forward())),
        "cancel_after_pivot": ("a cancel while Notify runs is refused: past the pivot",
                               lambda: _order(_cancel_during("Notify"))),
    },
    "video": {
        "success": ("completes (stand-in handlers on the example's step graph)",
                    lambda: _video(lambda run: None)),
        "failure_with_compensation": (
            "UpdateCatalog fails for good: thumbnails, renditions and the upload compensated",
            lambda: _video(_fail("UpdateCatalog", retryable=False))),
        "cancellation": ("cancelled while GenerateThumbnails runs",
                         lambda: _video(_cancel_during("GenerateThumbnails"))),
        "retries": ("Transcode720p fails twice in the parallel group, then succeeds",
                    lambda: _video(_fail("Transcode720p", times=2))),
        "timeouts": ("ExtractMetadata hangs once: its step timeout retries it",
                     lambda: _video(lambda run: run.faults.hang("ExtractMetadata", times=1))),
        "compensation_failed": (
            "NotifyWebhook fails for good, UpdateCatalog's compensation fails for good",
            lambda: _video(_both(_fail("NotifyWebhook", retryable=False),
                                 lambda run: run.faults.fail_compensation("UpdateCatalog",
                                                                          times=None)))),
        "operator_retry": (
            "CompensationFailed, then an operator's retry of the compensation succeeds",
            lambda: _video(_both(_fail("NotifyWebhook", retryable=False),
                                 lambda run: run.faults.fail_compensation("UpdateCatalog",
                                                                          times=2)),
                           lambda run: run.retry_compensation())),
    },
    "expense_approval": {
        "approved_then_cool_down": (
            "Approve signalled, CoolDown sleeps 600 s on its durable timer, Pay completes",
            lambda: _expense(_both(_approve(), lambda run: run.advance(seconds=600)),
                             pay_after_s=600)),
        "duplicate_signal": (
            "the same Signal-Id twice: one SignalReceived, the expense completes",
            lambda: _expense(_both(_approve(signal_id="click-1"),
                                   _approve(signal_id="click-1"),
                                   lambda run: run.run_until_settled()))),
        "rejected": ("Approve says no: Pay fails for good, HoldFunds is released",
                     lambda: _expense(_both(_approve(approved=False),
                                            lambda run: run.run_until_settled()))),
        "approval_timeout": (
            "no signal within the approval timeout: SignalTimedOut, HoldFunds is released",
            lambda: _expense(lambda run: run.advance(seconds=APPROVAL_TIMEOUT_S))),
        "cancel_while_sleeping": (
            "cancelled during CoolDown: HoldFunds released, the sleep's timer records nothing",
            lambda: _expense(_both(_approve(), lambda run: run.cancel(),
                                   lambda run: run.advance(seconds=3600)), pay_after_s=600)),
    },
    "trip_booking": {
        "trip_completed": (
            "the child step Hotel starts BookHotel, takes its response, the trip completes "
            "and submits its IssueItinerary (depends_on)", lambda: _trip("trip")),
        "hotel_completed": ("the child BookHotel completes and reports to its parent",
                            lambda: _trip("hotel")),
        "itinerary_after_trip": ("IssueItinerary, started by the trip's completion",
                                 lambda: _trip("itinerary")),
        "trip_compensates_child": (
            "ChargeTrip fails: the completed child is compensated, then HoldSeat",
            lambda: _trip("trip", fail_charge=True)),
        "hotel_compensated_by_parent": (
            "the completed child compensates ConfirmRoom then ReserveRoom when its parent "
            "compensates past it, and ends Cancelled", lambda: _trip("hotel", fail_charge=True)),
        "trip_cancelled_while_child_runs": (
            "the trip is cancelled while its child's ConfirmRoom runs: the child is cancelled "
            "first, then HoldSeat released", lambda: _trip("trip", _cancel_trip_during(
                "ConfirmRoom"))),
        "hotel_cancelled_by_parent": (
            "the running child is cancelled by its parent (its ConfirmRoom answers with a "
            "success) and compensates ConfirmRoom then ReserveRoom",
            lambda: _trip("hotel", _cancel_trip_during("ConfirmRoom"))),
        "hotel_failed": ("the child fails: its step fails, the trip releases HoldSeat",
                         lambda: _trip("hotel", fail_confirm=True)),
    },
    "page_thumbnails": {
        "success": ("a for_each over 10 pages, at most 8 in flight; the index reads the "
                    "results in page order", lambda: _thumbnails(10)),
        "page_fails": (
            "page 2 of 10 fails for good: the instances in flight are told to stop (in "
            "process they finish anyway), every thumbnail written is deleted in reverse page "
            "order, then the pages", lambda: _thumbnails(10, fail_page=2)),
    },
    "workflows": {
        "order_success": ("the order workflow completes", lambda: _order_workflow(
            lambda run: None)),
        "order_failure_with_compensation": (
            "Pack fails for good: the except block refunds, then releases the stock",
            lambda: _order_workflow(_fail("Pack", retryable=False))),
        "order_cancellation": ("cancelled while ChargeCard runs: the stock is released",
                               lambda: _order_workflow(_cancel_during("ChargeCard"))),
        "order_retries": ("ChargeCard fails twice, its third attempt succeeds",
                          lambda: _order_workflow(_fail("ChargeCard", times=2))),
        "order_timeouts": ("PrintLabel hangs once: its step timeout retries it",
                           lambda: _order_workflow(
                               lambda run: run.faults.hang("PrintLabel", times=1))),
        "barista": ("pay (with a recorded uuid), coffee and milk in parallel, serve",
                    _barista),
        "trip_child_completed": (
            "PlanTrip awaits its BookHotel child (wf.child), takes its response, charges",
            lambda: _trip_workflow()),
        "trip_child_failed": (
            "the BookHotel child fails: ChildFailed at the await, the seat is released",
            lambda: _trip_workflow(fail_confirm=True)),
        "trip_child_compensated": (
            "the charge fails: wf.compensate_child undoes the completed child, then the seat "
            "is released", lambda: _trip_workflow(fail_charge=True)),
        "trip_cancelled_while_child_runs": (
            "cancelled while the child's ConfirmRoom runs: the child is cancelled, the body "
            "waits for its end, then releases the seat",
            lambda: _trip_workflow(_cancel_trip_during("ConfirmRoom"))),
    },
    "versions": {
        "parked_then_redeployed": (
            "v1 task parks when v2 replaces v1, resumes when v1 is deployed again",
            lambda: _versions(_v1_deployed_again)),
        "migrated_to_compatible": (
            "parked v1 task: a move to v2 (step renamed) is refused, to v3 (retry policy "
            "only) goes on", lambda: _versions(_v3_compatible)),
        "cancel_refused_then_compensated": (
            "parked v1 task: cancel refused (no compensation deployed), then cancelled on v3",
            lambda: _versions(_cancel_refused_then_compensated)),
    },
}


def record(example: str, scenario: str) -> Path:
    description, build = SCENARIOS[example][scenario]
    _, recorder, task_id = build()
    path = HISTORIES / example / f"{scenario}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recorder.history(task_id, description), indent=1) + "\n")
    return path


def main(argv: list[str]) -> int:
    wanted = argv or [f"{e}/{s}" for e, scenarios in SCENARIOS.items() for s in scenarios]
    for name in wanted:
        example, _, scenario = name.partition("/")
        if scenario not in SCENARIOS.get(example, {}):
            known = [f"{e}/{s}" for e, ss in SCENARIOS.items() for s in ss]
            print(f"unknown scenario {name!r}; known: {known}", file=sys.stderr)
            return 2
        print(f"wrote {record(example, scenario)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

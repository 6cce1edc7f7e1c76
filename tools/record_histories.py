"""Record the golden histories under tests/fixtures/histories/ from real in-process runs.

    PYTHONPATH=services:examples:. python tools/record_histories.py [EXAMPLE/SCENARIO ...]

Each scenario runs the real orchestrator and step worker on the in-memory ports
(``tasksaga.testing.SagaTestRun``) with injected failures, and writes every decision of the
task to ``tests/fixtures/histories/<example>/<scenario>.json``. Regenerating is a deliberate
act: the diff of the fixtures is what a reviewer reads to accept that old runs now decide
differently. tests/unit/test_golden_histories.py replays them all.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from history_runs import DEFINITIONS as DEFINITIONS
from history_runs import (
    Scenario,
    _approve,
    _barista,
    _both,
    _cancel_during,
    _cancel_refused_then_compensated,
    _cancel_trip_during,
    _expense,
    _fail,
    _order,
    _order_workflow,
    _thumbnails,
    _trip,
    _trip_workflow,
    _v1_deployed_again,
    _v3_compatible,
    _versions,
    _video,
    _zip,
)

from tasksaga_examples.expense_approval import (
    APPROVAL_TIMEOUT_S,
)

HISTORIES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "histories"

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

"""The thumbnail-each-page example in process (tasksaga.testing): 1,000 pages, a failing page,
per-instance progress and the compact audit trail."""

from __future__ import annotations

import json
import time

from tasksaga.core.state import StepStatus, TaskStatus
from tasksaga.testing import ManualClock, SagaTestRun
from tasksaga_examples.page_thumbnails import (
    BUCKET,
    MAX_PARALLEL,
    ThumbnailRequest,
    ThumbnailResponse,
    page_thumbnails,
)


def document(pages: int) -> str:
    return "\f".join(f"page {n}\nbody of page {n}" for n in range(pages))


def test_a_1000_page_document_gets_a_thumbnail_per_page_indexed_in_page_order() -> None:
    run = SagaTestRun(page_thumbnails, clock=ManualClock())
    started = time.perf_counter()
    task = run.submit(ThumbnailRequest(document=document(1000)))
    print(f"\n1,000-page fan-out through the test kit: {time.perf_counter() - started:.1f} s")
    task.assert_completed()
    response = task.response(ThumbnailResponse)
    assert response.thumbnails == [f"{task.task_id}/thumbs/{n:05d}.txt" for n in range(1000)]
    index = json.loads(b"".join(run.objects.open_stream(BUCKET, response.index_key)))
    assert index == response.thumbnails
    assert b"".join(run.objects.open_stream(BUCKET, response.thumbnails[999])) == b"PAGE 999"
    dispatches = [step for step, _ in task.dispatched if step.startswith("ThumbnailEach[")]
    assert dispatches == [f"ThumbnailEach[{n}]" for n in range(1000)]
    audit = task.audit()
    assert len(audit) < 20, audit  # one summary, not a line per instance
    task.assert_audit_contains("step ThumbnailEach expanded into 1000 instances",
                               "step ThumbnailEach completed: 1000 of 1000 instances succeeded")
    # Each finished instance deleted its deadline: no 1,000 timers left to fire for nothing.
    assert [t for _, t in run.store.timers() if t.step.startswith("ThumbnailEach[")] == []


def test_at_most_max_parallel_pages_are_in_flight_at_any_moment() -> None:
    run = SagaTestRun(page_thumbnails)
    task = run.submit(ThumbnailRequest(document=document(40)))
    task.assert_completed()
    in_flight = peak = 0
    for event in task.events:
        name = getattr(event, "step", "")
        if not name.startswith("ThumbnailEach["):
            continue
        kind = type(event).__name__
        in_flight += {"StepDispatched": 1, "StepCompleted": -1}.get(kind, 0)
        peak = max(peak, in_flight)
    assert peak == MAX_PARALLEL


def test_a_page_that_fails_for_good_deletes_the_written_thumbnails_in_reverse_page_order(
) -> None:
    run = SagaTestRun(page_thumbnails)
    task = run.submit(ThumbnailRequest(document=document(30), fail_page=17))
    task.assert_status(TaskStatus.FAILED)
    undone = [s for s in task.compensation_order if s.startswith("ThumbnailEach[")]
    numbers = [int(s[len("ThumbnailEach["):-1]) for s in undone]
    assert numbers == sorted(numbers, reverse=True) and 17 not in numbers
    assert task.compensation_order[-1] == "SplitPages"
    assert task.step_status("ThumbnailEach") is StepStatus.FAILED
    assert not [k for k in run.objects.keys(BUCKET) if "/thumbs/" in k]
    assert not [k for k in run.objects.keys(BUCKET) if "/pages/" in k]
    task.assert_audit_contains(
        "step ThumbnailEach[17] failed (attempt 1): NonRetryableError: page 17 cannot be "
        "rendered", "step ThumbnailEach failed (attempt 1): FanOutFailed: 1 of 30 instances "
        "failed; first: ThumbnailEach[17]",
        f"task failed, compensated ({len(numbers)} instances of ThumbnailEach compensated)")


def test_each_instance_reports_its_own_progress() -> None:
    run = SagaTestRun(page_thumbnails)
    task = run.submit(ThumbnailRequest(document=document(3)))
    task.assert_completed()
    progress = task.progress("ThumbnailEach[2]")
    assert progress is not None and progress.message == "page 2 read"
    assert task.progress("ThumbnailEach") is None


def test_injected_failures_of_the_for_each_step_hit_its_first_runs_and_are_retried() -> None:
    run = SagaTestRun(page_thumbnails)
    run.faults.fail("ThumbnailEach", times=2)
    task = run.submit(ThumbnailRequest(document=document(5)))
    task.assert_completed()
    retried = sorted(step for step, attempt in task.dispatched if attempt == 2)
    assert retried == ["ThumbnailEach[0]", "ThumbnailEach[1]"]
    task.assert_audit_contains("step ThumbnailEach[0] failed (attempt 1)",
                               "step ThumbnailEach[0] retry scheduled (attempt 2)")

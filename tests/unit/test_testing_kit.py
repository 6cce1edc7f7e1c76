"""tasksaga.testing runs a saga in process: the real orchestrator and step runner on in-memory
ports, a clock that only moves when told, injected failures, and the real audit renderer."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from typing import Any

import pytest

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_producer import DeliveryFailed
from tasksaga.api.submission import SubmissionError
from tasksaga.core import RetryPolicy, StepContext, TaskDefinition
from tasksaga.core.artifacts import BUCKET as ARTIFACT_BUCKET
from tasksaga.core.audit import describe
from tasksaga.core.errors import StepCancelled
from tasksaga.core.state import StepStatus, TaskState, TaskStatus, evolve
from tasksaga.testing import (
    InjectedFailure,
    InMemoryBus,
    InMemoryEventStore,
    ManualClock,
    SagaStuck,
    SagaTestRun,
    run_saga,
)
from tasksaga.worker.results import ResultSender
from tasksaga_examples.zip_archive import (
    ARCHIVE_BUCKET,
    ArchiveData,
    ZipRequest,
    ZipResponse,
    create_zip,
)
from tests.unit.sagas import Req, grouped, linear


def zip_run(*contents: bytes) -> tuple[SagaTestRun, ZipRequest]:
    run = SagaTestRun(create_zip)
    files = [run.upload(f"f{i}.txt", c) for i, c in enumerate(contents)]
    return run, ZipRequest(files=files)


def test_the_zip_saga_completes_with_its_archive_in_the_object_store() -> None:
    run, request = zip_run(b"hello", b"world")
    task = run.submit(request)
    task.assert_completed()
    task.assert_steps_completed(["UploadFiles", "CreateArchive", "PublishManifest"])
    response = task.response(ZipResponse)
    assert [e.name for e in response.entries] == ["f0.txt", "f1.txt"]
    archive = b"".join(run.objects.read(response.archive_bucket, key)
                       for key in response.archive_parts)
    assert hashlib.sha256(archive).hexdigest() == response.archive_sha256
    with zipfile.ZipFile(io.BytesIO(archive)) as unpacked:
        assert [unpacked.read(name) for name in unpacked.namelist()] == [b"hello", b"world"]
    assert task.data("CreateArchive", ArchiveData).size == response.archive_size == len(archive)
    assert run.artifact_refs.holders(response.archive_sha256) == {f"{task.task_id}:CreateArchive"}
    # The handler's heartbeats reached the orchestrator, as the status API would show them.
    progress = task.progress("CreateArchive")
    assert progress is not None and progress.progress == 1.0
    assert progress.message == "archived f1.txt"


def test_a_retry_waits_for_its_backoff_on_the_manual_clock() -> None:
    run, request = zip_run(b"hello")
    run.faults.fail("CreateArchive", times=1)
    task = run.submit(request, settle=False)
    assert task.step_status("CreateArchive") is StepStatus.RETRY_SCHEDULED
    run.advance(ms=499)  # CreateArchive's policy: 500 ms before the second attempt
    assert task.dispatched == [("CreateArchive", 1)]
    run.advance(ms=1)
    assert task.dispatched == [("CreateArchive", 1), ("CreateArchive", 2),
                               ("PublishManifest", 1)]
    task.assert_completed()
    assert [(a.step, a.attempt, a.outcome, a.error_type) for a in task.attempts][1:3] == [
        ("CreateArchive", 1, "failed", "InjectedFailure"),
        ("CreateArchive", 2, "completed", None)]


def test_settling_skips_ahead_through_every_backoff() -> None:
    run, request = zip_run(b"hello")
    run.faults.fail("CreateArchive", times=3)
    started = run.clock.now_ms()
    task = run.submit(request)
    task.assert_completed()
    assert [a for s, a in task.dispatched if s == "CreateArchive"] == [1, 2, 3, 4]
    assert run.clock.now_ms() - started == 500 + 1000 + 2000  # the doubling backoff, no jitter


def test_a_failure_compensates_the_completed_steps_in_reverse_order() -> None:
    run, request = zip_run(b"hello")
    run.faults.fail("PublishManifest", retryable=False)
    task = run.submit(request)
    task.assert_status(TaskStatus.FAILED)
    task.assert_compensated(["CreateArchive", "UploadFiles"])
    # Compensating CreateArchive released its artifact, the last reference: its parts are gone.
    assert run.objects.keys(ARTIFACT_BUCKET) == []
    assert run.objects.keys(ARCHIVE_BUCKET) == []  # no manifest was written
    assert run.objects.keys("zip-uploads") == []  # and the upload step's deleted the uploads


def test_a_step_that_fails_on_every_attempt_exhausts_its_retries_then_compensates() -> None:
    run, request = zip_run(b"hello")
    run.faults.fail("CreateArchive", times=None, error=OSError("disk full"))
    task = run.submit(request)
    task.assert_status(TaskStatus.FAILED)
    assert [a for s, a in task.dispatched if s == "CreateArchive"] == [1, 2, 3, 4]
    task.assert_compensated(["UploadFiles"])
    task.assert_audit_contains("step CreateArchive failed (attempt 4): OSError: disk full",
                               "step UploadFiles compensated")


def test_a_hung_step_times_out_only_once_the_clock_passes_its_timeout() -> None:
    run, request = zip_run(b"hello")
    run.faults.hang("CreateArchive")
    task = run.submit(request, settle=False)
    run.advance(seconds=119)  # the step timeout is 120 s, counted from the worker's start
    assert task.step_status("CreateArchive") is StepStatus.RUNNING
    run.advance(seconds=1)
    assert task.attempts[1].error_type == "StepTimedOut"
    run.run_until_settled()
    task.assert_completed()
    assert [a for s, a in task.dispatched if s == "CreateArchive"] == [1, 2]


def test_a_cancellation_while_a_step_runs_sets_its_signal_and_compensates() -> None:
    seen: list[bool] = []
    run, request = zip_run(b"a", b"b")

    def cancel_now(ctx: StepContext[Any]) -> None:
        run.cancel(reason="the user changed their mind")
        seen.append(ctx.is_cancelled())

    run.faults.during("CreateArchive", cancel_now)
    task = run.submit(request)
    assert seen == [True]  # the CancelStep reached the running handler's signal
    task.assert_status(TaskStatus.CANCELLED)
    task.assert_compensated(["UploadFiles"])
    task.assert_audit_contains("cancellation requested: the user changed their mind",
                               "step CreateArchive told to stop",
                               "task cancelled, compensated")


def test_a_compensation_that_keeps_failing_waits_for_an_operator_retry() -> None:
    definition = linear(2, retry=RetryPolicy(max_retries=0))
    run = SagaTestRun(definition)
    run.faults.fail("S2", retryable=False)
    run.faults.fail_compensation("S1", times=1)
    task = run.submit(Req())
    task.assert_status(TaskStatus.COMPENSATION_FAILED)
    run.retry_compensation()
    task.assert_status(TaskStatus.FAILED)
    task.assert_compensated(["S1"])


def test_the_audit_lines_are_the_services_own_rendering_of_the_events() -> None:
    task = run_saga(linear(2), Req())
    state, expected = TaskState(), []
    for envelope in task.envelopes:
        expected.append(describe(envelope.payload, state, envelope.occurred_at_ms))
        state = evolve(state, envelope.payload)
    assert task.audit() == expected
    assert task.audit()[-1] == "task completed"


def test_two_runs_of_the_same_saga_are_identical() -> None:
    def audit() -> list[str]:
        run = SagaTestRun(create_zip)
        run.faults.fail("CreateArchive", times=2)
        return run.submit(ZipRequest(files=[run.upload("a.txt", b"x")])).audit()

    assert audit() == audit()


def test_injected_failures_leave_the_users_definition_untouched() -> None:
    definition = linear(1)
    handler = definition.get_step("S1").handler
    run = SagaTestRun(definition)
    run.faults.fail("S1", times=None, retryable=False)
    run.submit(Req()).assert_status(TaskStatus.FAILED)
    assert definition.get_step("S1").handler is handler
    run_saga(definition, Req()).assert_completed()


def test_a_task_that_cannot_settle_within_the_budget_is_reported_stuck() -> None:
    definition = linear(1, retry=RetryPolicy(max_retries=100, delay_ms=60_000))
    run = SagaTestRun(definition)
    run.faults.fail("S1", times=None)
    run.submit(Req(), settle=False)
    with pytest.raises(SagaStuck, match=r"did not settle(.|\n)*retry scheduled"):
        run.run_until_settled(budget_ms=600_000)


def test_a_handler_that_raises_step_cancelled_fails_its_step_without_retry() -> None:
    definition = linear(2)
    run = SagaTestRun(definition)
    run.faults.fail("S2", error=StepCancelled("stopped"))
    task = run.submit(Req())
    assert task.attempts[-1].error_type == "Cancelled"
    task.assert_compensated(["S1"])


def test_bad_submissions_are_refused_with_a_clear_message() -> None:
    run = SagaTestRun(create_zip)
    with pytest.raises(TypeError, match="CreateZip takes a ZipRequest request, got Req"):
        run.submit(Req())
    missing = run.upload("a.txt", b"x").model_copy(update={"key": "nowhere"})
    with pytest.raises(ValueError, match=r"'a.txt' of 'files' is not in the object store"):
        run.submit(ZipRequest(files=[missing]))
    with pytest.raises(ValueError, match="at least 1"):
        run.faults.fail("CreateArchive", times=0)
    run.faults.fail("CreateArchiv")  # a typo must not make a test pass without its fault
    with pytest.raises(ValueError, match=r"names steps \['CreateArchiv'\] that no definition"):
        run.submit(ZipRequest(files=[run.upload("b.txt", b"y")]))


def test_an_injected_failure_of_an_api_step_refuses_the_submission() -> None:
    task = TaskDefinition("Reserved", queue="q", request=Req)

    @task.api_step("Reserve", order=1)
    def reserve(ctx: StepContext[Req]) -> None:
        return None

    @task.step("Work", order=2)
    def work(ctx: StepContext[Req]) -> None:
        return None

    run = SagaTestRun(task)
    run.faults.fail("Reserve", error=PermissionError("over quota"))
    with pytest.raises(SubmissionError, match=r"'Reserve' refused the submission.*over quota"):
        run.submit(Req())
    assert run.store.stream_ids() == []  # nothing was accepted


def test_the_manual_clock_only_moves_forward_when_told() -> None:
    clock = ManualClock(start_ms=1_000)
    assert clock.now_ms() == 1_000
    assert clock.advance(250, seconds=1.5) == 2_750
    assert clock.advance_to(2_000) == 2_750  # never back
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)


def test_an_injected_failure_is_retryable_by_default() -> None:
    run = SagaTestRun(linear(1, retry=RetryPolicy(max_retries=1)))
    run.faults.fail("S1")
    task = run.submit(Req())
    task.assert_completed()
    assert task.attempts[0].error_type == InjectedFailure.__name__


def test_a_parallel_group_runs_every_member_and_a_false_condition_skips_its_step() -> None:
    hd = run_saga(grouped(), Req(width=1920))
    hd.assert_completed()
    hd.assert_steps_completed(["A", "B1", "B2", "C"])  # members in dispatch order
    assert hd.skipped == ["B3"]
    hd.assert_audit_contains("condition 'Source >= 4K' of step B3 (is_4k) = False [Width=1920]",
                             "step B3 skipped")
    uhd = run_saga(grouped(), Req(width=3840))
    uhd.assert_completed()
    assert uhd.skipped == [] and "B3" in uhd.steps_completed


def test_a_result_the_bus_refuses_is_sent_again_until_it_is_taken() -> None:
    bus = InMemoryBus()
    sender = ResultSender(bus, AvroCodec(), "results", threading.Event(), retry_cap_s=0.001)
    bus.refuse_next(2)
    sender.deliver(b"t1", b"result", lost=lambda: False)
    assert sender.resends == 2
    assert [r.value for r in bus.records("results")] == [b"result"]  # once, after the outage


def test_a_record_too_large_for_the_bus_is_not_sent_again() -> None:
    bus = InMemoryBus(max_record_bytes=10)
    sender = ResultSender(bus, AvroCodec(), "results", threading.Event())
    with pytest.raises(DeliveryFailed) as refused:
        sender.deliver(b"t1", b"x" * 11, lost=lambda: False)
    assert refused.value.too_large and sender.resends == 0 and bus.records() == []


def test_a_transaction_opened_inside_another_fails_instead_of_hanging() -> None:
    store = InMemoryEventStore()
    with pytest.raises(RuntimeError, match="inside another"), store.transaction() as outer:
        outer.claim_message("c", "m")
        store.transaction().__enter__()
    with store.transaction() as tx:  # the outer one rolled back and released the store
        assert tx.claim_message("c", "m")


def test_an_injected_compensation_failure_fails_a_producer_without_a_compensation_handler(
) -> None:
    # CreateArchive has no compensation handler: compensating it releases its artifact.
    run, request = zip_run(b"hello")
    run.faults.fail("PublishManifest", retryable=False)
    run.faults.fail_compensation("CreateArchive", times=None)
    task = run.submit(request)
    task.assert_status(TaskStatus.COMPENSATION_FAILED)
    # The failure came before the release: the artifact is still held and stored.
    archive = task.data("CreateArchive", ArchiveData)
    assert run.artifact_refs.holders(archive.sha256) == {f"{task.task_id}:CreateArchive"}
    assert all(run.objects.exists(archive.bucket, key) for key in archive.parts)

"""An upload step with ``produces=`` publishes each uploaded file as an artifact held by its
task:step: a later step opens them verified, compensation and a refused submission release
them, and bad declarations are diagnosed."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from tasksaga.api.api_steps import run_api_steps
from tasksaga.api.submission import MultipartSubmission, SubmissionError, store_files
from tasksaga.core import DefinitionError, TaskDefinition, UploadedFile
from tasksaga.core import events as ev
from tasksaga.core.artifacts import BUCKET, ArtifactMissing
from tasksaga.core.diagnostics import diagnose
from tasksaga.core.state import TaskStatus
from tasksaga.testing import SagaTestRun
from tasksaga.testing.memory_artifact_refs import InMemoryArtifactRefs
from tasksaga.testing.memory_objects import InMemoryObjectStore
from tasksaga.worker.artifacts import ArtifactStore


class Req(BaseModel):
    files: list[UploadedFile]
    fail_last: bool = False


class OneReq(BaseModel):
    video: UploadedFile


class Digests(BaseModel):
    names: list[str]
    sha256: list[str]


def digest_all(ctx: Any) -> Digests:
    names = ctx.artifacts.names("source")
    return Digests(names=names, sha256=[
        hashlib.sha256(b"".join(ctx.artifacts.open(n))).hexdigest() for n in names])


def notify(ctx: Any) -> None:
    if ctx.request.fail_last:
        raise RuntimeError("notify refused")


def zipper() -> TaskDefinition:
    task = TaskDefinition("Zipper", queue="q", request=Req)
    task.upload_step("Upload", order=1, bucket="in", source="files", produces="source")
    task.step("Digest", order=2, consumes=["source"])(digest_all)
    task.step("Notify", order=3)(notify)
    return task


def test_a_later_step_opens_every_uploaded_file_as_an_indexed_artifact() -> None:
    run = SagaTestRun(zipper())
    files = [run.upload("a.txt", b"alpha"), run.upload("b.txt", b"beta")]
    task = run.submit(Req(files=files))
    task.assert_completed()
    assert task.data("Digest", Digests) == Digests(
        names=["source[0]", "source[1]"],
        sha256=[hashlib.sha256(b"alpha").hexdigest(), hashlib.sha256(b"beta").hexdigest()])
    upload = next(e for e in task.events if isinstance(e, ev.StepCompleted))
    assert upload.step == "Upload" and set(upload.artifacts) == {"source[0]", "source[1]"}
    assert dict(task.state.step("Upload").artifacts).keys() == {"source[0]", "source[1]"}
    assert run.artifact_refs.holders(hashlib.sha256(b"alpha").hexdigest()) == {
        f"{task.state.task_id}:Upload"}


def test_compensating_the_upload_step_releases_its_artifacts() -> None:
    run = SagaTestRun(zipper())
    task = run.submit(Req(files=[run.upload("a.txt", b"alpha")], fail_last=True))
    assert task.status is TaskStatus.FAILED
    task.assert_compensated(["Upload"])
    assert run.artifact_refs.holders(hashlib.sha256(b"alpha").hexdigest()) == set()
    assert run.objects.keys(BUCKET) == []


def test_a_single_file_field_publishes_the_name_itself() -> None:
    task = TaskDefinition("One", queue="q", request=OneReq)
    task.upload_step("Upload", order=1, bucket="in", source="video", produces="video")

    @task.step("Read", order=2, consumes=["video"])
    def read(ctx: Any) -> Digests:
        return Digests(names=ctx.artifacts.names("video"),
                       sha256=[hashlib.sha256(b"".join(ctx.artifacts.open("video"))).hexdigest()])

    run = SagaTestRun(task)
    done = run.submit(OneReq(video=run.upload("v.mp4", b"frames")))
    done.assert_completed()
    assert done.data("Read", Digests).names == ["video"]


def test_opening_the_declared_name_of_indexed_artifacts_says_which_names_to_open() -> None:
    task = TaskDefinition("Wrong", queue="q", request=Req)
    task.upload_step("Upload", order=1, bucket="in", source="files", produces="source")

    @task.step("Read", order=2, consumes=["source"])
    def read(ctx: Any) -> None:
        b"".join(ctx.artifacts.open("source"))

    run = SagaTestRun(task)
    failed = run.submit(Req(files=[run.upload("a", b"a")]))
    failure = next(e for e in failed.events if isinstance(e, ev.StepFailed))
    assert failure.error_type == ArtifactMissing.__name__ and not failure.will_retry
    assert "'source[0]'" in failure.error_message


def submission(*contents: bytes) -> MultipartSubmission:
    return MultipartSubmission({}, {"files": [
        UploadFile(io.BytesIO(c), filename=f"f{i}.bin") for i, c in enumerate(contents)]})


def test_the_api_streams_uploads_through_the_artifact_store_held_by_task_and_step() -> None:
    objects, refs = InMemoryObjectStore(), InMemoryArtifactRefs()
    request, results = store_files(zipper(), "t1", submission(b"one", b"two"), objects,
                                   artifacts=ArtifactStore(objects, refs))
    assert [f.size for f in request.files] == [3, 3]  # type: ignore[attr-defined]
    assert set(results[0].artifacts) == {"source[0]", "source[1]"}
    assert refs.holders(hashlib.sha256(b"two").hexdigest()) == {"t1:Upload"}


def test_a_refused_submission_releases_what_its_upload_step_published() -> None:
    objects, refs = InMemoryObjectStore(), InMemoryArtifactRefs()
    artifacts = ArtifactStore(objects, refs)
    task = zipper()

    @task.api_step("Refuse", order=2)
    def refuse(ctx: Any) -> None:
        raise PermissionError("over quota")

    request, results = store_files(task, "t1", submission(b"one"), objects,
                                   artifacts=artifacts)
    with pytest.raises(SubmissionError, match="over quota"):
        run_api_steps(task, "t1", request, results, objects, artifacts)
    assert refs.holders(hashlib.sha256(b"one").hexdigest()) == set()
    assert objects.keys(BUCKET) == []


def test_an_upload_step_takes_one_artifact_name() -> None:
    task = TaskDefinition("Bad", queue="q", request=Req)
    with pytest.raises(DefinitionError, match=r"TS192.*give one artifact name"):
        task.upload_step("Upload", order=1, bucket="in", source="files",
                         produces=["a", "b"])  # type: ignore[arg-type]


def test_consuming_an_indexed_name_is_diagnosed_with_the_name_to_declare() -> None:
    task = TaskDefinition("Indexed", queue="q", request=Req)
    task.upload_step("Upload", order=1, bucket="in", source="files", produces="source")
    task.step("Read", order=2, consumes=["source[0]"])(digest_all)
    messages = [str(d) for d in diagnose(task) if d.code == "TS192"]
    assert messages and "consumes=['source']" in messages[0]


def test_an_upload_artifact_no_earlier_step_produces_is_diagnosed() -> None:
    task = TaskDefinition("Early", queue="q", request=Req)
    task.step("Read", order=1, consumes=["source"])(digest_all)
    task.upload_step("Upload", order=2, bucket="in", source="files", produces="source")
    assert any(d.code == "TS190" for d in diagnose(task))


def test_an_api_without_an_artifact_store_refuses_before_storing_anything() -> None:
    objects = InMemoryObjectStore()
    with pytest.raises(RuntimeError, match="no artifact store"):
        store_files(zipper(), "t1", submission(b"one"), objects)
    assert objects.keys("in") == []

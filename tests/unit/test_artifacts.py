"""Artifacts on the in-memory ports: content-addressed, verified part by part while streaming
(a truncated part, a flipped byte, a missing part fail before any byte of that part reaches
the reader), reference-counted, and limited to the names a step declares."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from pydantic import BaseModel

from tasksaga.core import TaskDefinition
from tasksaga.core import events as ev
from tasksaga.core.artifacts import (
    BUCKET,
    ArtifactCorrupted,
    ArtifactNotDeclared,
    ArtifactRef,
)
from tasksaga.core.state import TaskStatus
from tasksaga.testing import SagaTestRun
from tasksaga.testing.memory_artifact_refs import InMemoryArtifactRefs
from tasksaga.testing.memory_objects import InMemoryObjectStore
from tasksaga.worker.artifact_cache import PartCache
from tasksaga.worker.artifacts import ArtifactStore, StepArtifacts

PART = 1000
CONTENT = bytes(range(256)) * 10 + b"tail"  # 2564 bytes: parts of 1000, 1000, 564


def store() -> tuple[ArtifactStore, InMemoryObjectStore, InMemoryArtifactRefs]:
    objects, refs = InMemoryObjectStore(), InMemoryArtifactRefs()
    return ArtifactStore(objects, refs, part_size=PART), objects, refs


def read_until_failure(chunks: Any) -> tuple[bytes, BaseException | None]:
    received = b""
    try:
        for chunk in chunks:
            received += chunk
    except ArtifactCorrupted as error:
        return received, error
    return received, None


def test_a_published_artifact_reads_back_with_its_size_hash_and_parts() -> None:
    artifacts, objects, _ = store()
    ref = artifacts.publish(io.BytesIO(CONTENT), "t:Fetch")
    assert ref.sha256 == hashlib.sha256(CONTENT).hexdigest()
    assert (ref.size, ref.parts) == (len(CONTENT), 3)
    assert b"".join(artifacts.open(ref)) == CONTENT
    assert objects.keys(BUCKET) == [ref.part_key(i) for i in range(3)]  # no temporary left
    assert ArtifactRef.from_json(ref.to_json()) == ref


def test_identical_content_is_stored_once() -> None:
    artifacts, objects, refs = store()
    first = artifacts.publish(io.BytesIO(CONTENT), "t1:Fetch")
    second = artifacts.publish(io.BytesIO(CONTENT), "t2:Fetch")
    assert first == second
    assert len(objects.keys(BUCKET)) == 3
    assert refs.holders(first.sha256) == {"t1:Fetch", "t2:Fetch"}


def test_releasing_keeps_content_another_holder_still_holds() -> None:
    artifacts, objects, _ = store()
    ref = artifacts.publish(io.BytesIO(CONTENT), "t1:Fetch")
    artifacts.publish(io.BytesIO(CONTENT), "t2:Fetch")
    assert artifacts.release(ref, "t1:Fetch") == 1
    assert b"".join(artifacts.open(ref)) == CONTENT
    assert artifacts.release(ref, "t2:Fetch") == 0
    assert objects.keys(BUCKET) == []


def test_a_truncated_part_fails_before_any_of_its_bytes_are_read() -> None:
    artifacts, objects, _ = store()
    ref = artifacts.publish(io.BytesIO(CONTENT), "t:Fetch")
    objects.replace_bytes(BUCKET, ref.part_key(2), CONTENT[2000:2500])
    received, error = read_until_failure(artifacts.open(ref))
    assert received == CONTENT[:2000]  # the two intact parts, nothing of the short one
    assert error is not None and "500 bytes, 564 were published" in str(error)


def test_a_flipped_byte_fails_before_any_byte_of_its_part_is_read() -> None:
    artifacts, objects, _ = store()
    ref = artifacts.publish(io.BytesIO(CONTENT), "t:Fetch")
    flipped = bytearray(CONTENT[1000:2000])
    flipped[999] ^= 0x01
    objects.replace_bytes(BUCKET, ref.part_key(1), bytes(flipped))
    received, error = read_until_failure(artifacts.open(ref))
    assert received == CONTENT[:1000]
    assert error is not None and "part 2 of 3" in str(error) and "SHA-256" in str(error)


def test_a_missing_part_fails_the_read() -> None:
    artifacts, objects, _ = store()
    ref = artifacts.publish(io.BytesIO(CONTENT), "t:Fetch")
    objects.delete(BUCKET, ref.part_key(1))
    received, error = read_until_failure(artifacts.open(ref))
    assert received == CONTENT[:1000]
    assert error is not None and "cannot be read" in str(error)


def test_a_part_that_reads_too_slowly_fails_the_read() -> None:
    ticks = iter(range(0, 10_000, 100))
    objects, refs = InMemoryObjectStore(), InMemoryArtifactRefs()
    artifacts = ArtifactStore(objects, refs, part_size=PART, part_timeout_s=50,
                              monotonic=lambda: float(next(ticks)))
    ref = artifacts.publish(io.BytesIO(CONTENT), "t:Fetch")
    _, error = read_until_failure(artifacts.open(ref))
    assert error is not None and "took over 50" in str(error)


def test_an_empty_artifact_has_no_parts_and_reads_back_empty() -> None:
    artifacts, _, _ = store()
    ref = artifacts.publish(io.BytesIO(b""), "t:Fetch")
    assert (ref.size, ref.parts) == (0, 0)
    assert b"".join(artifacts.open(ref)) == b""


def test_a_step_can_only_publish_and_open_the_names_it_declares() -> None:
    artifacts, _, _ = store()
    task = TaskDefinition("Media", queue="q", request=Req)
    task.step("Fetch", order=1, produces=["source"])(fetch)
    view = StepArtifacts(artifacts, task.get_step("Fetch"), "t:Fetch", {})
    with pytest.raises(ArtifactNotDeclared, match="add it to the step's produces="):
        view.publish("thumbnail", io.BytesIO(b"x"))
    with pytest.raises(ArtifactNotDeclared, match="to the step's consumes="):
        view.open("source")


# -- through a saga ------------------------------------------------------------------------------


class Req(BaseModel):
    fail_last: bool = False


class Digest(BaseModel):
    sha256: str
    size: int


def fetch(ctx: Any) -> None:
    ctx.artifacts.publish("source", io.BytesIO(CONTENT))


def transcode(ctx: Any) -> Digest:
    source = b"".join(ctx.artifacts.open("source"))
    ref = ctx.artifacts.publish("rendition", io.BytesIO(source.upper()))
    return Digest(sha256=ref.sha256, size=ref.size)


def notify(ctx: Any) -> None:
    if ctx.request.fail_last:
        raise RuntimeError("notify refused")


def media(max_retries: int = 0) -> TaskDefinition:
    task = TaskDefinition("Media", queue="q", request=Req, max_retries=max_retries)
    task.step("Fetch", order=1, produces=["source"])(fetch)
    task.step("Transcode", order=2, produces=["rendition"], consumes=["source"])(transcode)
    task.step("Notify", order=3)(notify)
    return task


def test_a_later_step_opens_what_an_earlier_one_published() -> None:
    run = SagaTestRun(media())
    task = run.submit(Req())
    task.assert_completed()
    digest = task.data("Transcode", Digest)
    assert digest.sha256 == hashlib.sha256(CONTENT.upper()).hexdigest()
    completed = [e for e in task.events if isinstance(e, ev.StepCompleted)]
    assert set(completed[0].artifacts) == {"source"}
    assert set(completed[1].artifacts) == {"rendition"}


def test_compensation_releases_artifacts_and_keeps_those_another_task_holds() -> None:
    run = SagaTestRun(media())
    kept = run.submit(Req())
    failed = run.submit(Req(fail_last=True))
    assert failed.status is TaskStatus.FAILED
    failed.assert_compensated(["Transcode", "Fetch"])
    source = hashlib.sha256(CONTENT).hexdigest()
    assert run.artifact_refs.holders(source) == {f"{kept.state.task_id}:Fetch"}
    assert any(key.startswith(f"sha256/{source}/") for key in run.objects.keys(BUCKET))


def test_a_corrupted_source_fails_the_consumer_with_a_retryable_error() -> None:
    run = SagaTestRun(media(max_retries=1))
    good = run.submit(Req())
    source = hashlib.sha256(CONTENT).hexdigest()
    # Both tasks share the stored content: corrupting it is seen by the next reader.
    run.objects.replace_bytes(BUCKET, f"sha256/{source}/000000", b"\x00" * len(CONTENT))
    task = run.submit(Req())
    assert good.status is TaskStatus.COMPLETED
    assert task.status is TaskStatus.FAILED
    failures = [e for e in task.events if isinstance(e, ev.StepFailed)]
    assert [(f.step, f.error_type, f.will_retry) for f in failures] == [
        ("Transcode", "ArtifactCorrupted", True), ("Transcode", "ArtifactCorrupted", False)]
    assert "part 1 of 1" in failures[0].error_message


def test_changing_a_steps_artifacts_changes_its_version_fingerprint() -> None:
    from tasksaga.core.fingerprint import fingerprint_of, step_graph

    plain = TaskDefinition("Media", queue="q", request=Req)
    plain.step("Fetch", order=1)(fetch)
    producing = TaskDefinition("Media", queue="q", request=Req)
    producing.step("Fetch", order=1, produces=["source"])(fetch)
    assert fingerprint_of(step_graph(plain)) != fingerprint_of(step_graph(producing))


def test_a_cached_part_is_served_without_reading_storage_again() -> None:
    objects, refs, cache = InMemoryObjectStore(), InMemoryArtifactRefs(), PartCache(3 * PART)
    artifacts = ArtifactStore(objects, refs, part_size=PART, cache=cache)
    ref = artifacts.publish(io.BytesIO(CONTENT), "t:Fetch")
    assert b"".join(artifacts.open(ref)) == CONTENT
    assert cache.size_bytes == len(CONTENT)
    for index in range(ref.parts):
        objects.delete(BUCKET, ref.part_key(index))
    assert b"".join(artifacts.open(ref)) == CONTENT  # every part from the cache


def test_the_part_cache_stays_within_its_bytes_and_skips_parts_larger_than_it() -> None:
    cache = PartCache(10)
    cache.put("a", b"12345")
    cache.put("b", b"12345")
    assert cache.get("a") == b"12345"  # now the most recently used
    cache.put("c", b"123")
    assert (cache.get("b"), cache.get("a"), cache.size_bytes) == (None, b"12345", 8)
    cache.put("big", b"x" * 11)
    assert cache.get("big") is None and cache.size_bytes == 8


def test_parallel_reads_of_one_artifact_on_a_worker_download_each_part_once() -> None:
    import threading

    objects, refs, cache = InMemoryObjectStore(), InMemoryArtifactRefs(), PartCache(3 * PART)
    ref = ArtifactStore(objects, refs, part_size=PART).publish(io.BytesIO(CONTENT), "t:Fetch")
    downloads: list[str] = []
    release = threading.Event()
    real_open = objects.open_stream

    def slow_open(bucket: str, key: str):  # type: ignore[no-untyped-def]
        downloads.append(key)
        release.wait(5)  # every reader is asking for the part while the first downloads it
        return real_open(bucket, key)

    objects.open_stream = slow_open  # type: ignore[method-assign]
    artifacts = ArtifactStore(objects, refs, part_size=PART, cache=cache)
    results: list[bytes] = []
    readers = [threading.Thread(target=lambda: results.append(b"".join(artifacts.open(ref))))
               for _ in range(4)]
    for reader in readers:
        reader.start()
    threading.Timer(0.3, release.set).start()
    for reader in readers:
        reader.join(10)
    assert results == [CONTENT] * 4
    assert sorted(downloads) == sorted({ref.part_key(i) for i in range(ref.parts)})

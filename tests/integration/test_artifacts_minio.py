"""Artifacts against the real MinIO and Postgres: a corrupted or missing part fails the read,
identical uploads are stored once, a shared content outlives one holder's release, and a big
artifact streams both ways in bounded memory (TASKSAGA_ARTIFACT_TEST_MB, default 200; set
2048 for the 2 GB run)."""

from __future__ import annotations

import io
import os
import tracemalloc
import uuid
from collections.abc import Iterator

import pytest
from psycopg_pool import ConnectionPool

from tasksaga.adapters.artifact_refs import PgArtifactRefs
from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga.core.artifacts import PART_SIZE, ArtifactCorrupted
from tasksaga.worker.artifacts import ArtifactStore

from .test_object_store import GeneratedStream

SMALL_PART = 256 * 1024
CONTENT = os.urandom(3 * SMALL_PART + 777)


@pytest.fixture
def objects(stack_env: dict[str, str]) -> MinioObjectStore:
    return MinioObjectStore(stack_env["TASKSAGA_S3_ENDPOINT"],
                            stack_env["TASKSAGA_S3_ACCESS_KEY"],
                            stack_env["TASKSAGA_S3_SECRET_KEY"])


@pytest.fixture
def bucket(objects: MinioObjectStore) -> Iterator[str]:
    name = f"artifacts-test-{uuid.uuid4().hex[:12]}"
    yield name
    for key, _ in list(objects.list_objects(name)):
        objects.delete(name, key)
    objects._client.remove_bucket(name)


def artifact_store(objects: MinioObjectStore, pool: ConnectionPool, bucket: str,
                   part_size: int = SMALL_PART) -> ArtifactStore:
    return ArtifactStore(objects, PgArtifactRefs(pool), bucket=bucket, part_size=part_size)


def test_a_corrupted_part_in_minio_fails_the_read(
    objects: MinioObjectStore, schema_pool: ConnectionPool, bucket: str,
) -> None:
    store = artifact_store(objects, schema_pool, bucket)
    ref = store.publish(io.BytesIO(CONTENT), "t:Fetch")
    changed = bytearray(CONTENT[SMALL_PART:2 * SMALL_PART])
    changed[12345] ^= 0xFF
    objects.put_stream(bucket, ref.part_key(1), io.BytesIO(bytes(changed)))
    received = b""
    with pytest.raises(ArtifactCorrupted, match="part 2 of 4"):
        for chunk in store.open(ref):
            received += chunk
    assert received == CONTENT[:SMALL_PART]


def test_a_missing_part_in_minio_fails_the_read(
    objects: MinioObjectStore, schema_pool: ConnectionPool, bucket: str,
) -> None:
    store = artifact_store(objects, schema_pool, bucket)
    ref = store.publish(io.BytesIO(CONTENT), "t:Fetch")
    objects.delete(bucket, ref.part_key(3))
    with pytest.raises(ArtifactCorrupted, match="cannot be read"):
        b"".join(store.open(ref))


def test_identical_uploads_are_stored_once_and_shared_content_outlives_a_release(
    objects: MinioObjectStore, schema_pool: ConnectionPool, bucket: str,
) -> None:
    store = artifact_store(objects, schema_pool, bucket)
    first = store.publish(io.BytesIO(CONTENT), "t1:Fetch")
    second = store.publish(io.BytesIO(CONTENT), "t2:Fetch")
    assert first == second
    keys = sorted(key for key, _ in objects.list_objects(bucket))
    assert keys == [first.part_key(i) for i in range(4)]  # once, no temporary parts left
    assert store.release(first, "t1:Fetch") == 1
    assert b"".join(store.open(first)) == CONTENT
    assert store.release(first, "t2:Fetch") == 0
    assert list(objects.list_objects(bucket)) == []
    with schema_pool.connection() as conn:
        row = conn.execute("SELECT count(*) FROM artifact_refs").fetchone()
    assert row is not None and row[0] == 0


def test_a_big_artifact_streams_both_ways_in_bounded_memory(
    objects: MinioObjectStore, schema_pool: ConnectionPool, bucket: str,
) -> None:
    size = int(os.environ.get("TASKSAGA_ARTIFACT_TEST_MB", "200")) * 1024 * 1024 + 4321
    store = artifact_store(objects, schema_pool, bucket, part_size=PART_SIZE)
    source = GeneratedStream(size)
    tracemalloc.start()
    ref = store.publish(source, "t:Render")  # type: ignore[arg-type]
    read = 0
    for chunk in store.open(ref):
        read += len(chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (ref.size, read) == (size, size)
    assert ref.sha256 == source.digest.hexdigest()
    # One part in flight per direction, with its copies (the part, its upload buffer, the
    # read buffer): a few parts, whatever the size.
    assert peak < 6 * PART_SIZE, f"peak {peak / 2**20:.1f} MiB"
    store.release(ref, "t:Render")

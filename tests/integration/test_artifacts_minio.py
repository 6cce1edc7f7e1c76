"""Artifacts against the real MinIO and Postgres: a corrupted or missing part fails the read,
identical uploads are stored once, a shared content outlives one holder's release, and a big
artifact (512 MiB, eight times the memory growth the test allows, so a copy held whole
would fail it; TASKSAGA_ARTIFACT_TEST_MB sets another size) streams both ways in bounded RSS."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from psycopg_pool import ConnectionPool

from tasksaga.adapters.artifact_refs import PgArtifactRefs
from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga.core.artifacts import PART_SIZE, ArtifactCorrupted
from tasksaga.worker.artifacts import ArtifactStore

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


# Run in a process of its own, so its peak RSS is the artifact's alone: it publishes and reads
# back a generated stream and prints how far its peak RSS (Linux VmHWM, reset first) grew past
# its RSS before.
_BIG_RUN = """
import json, sys
from psycopg_pool import ConnectionPool
from tasksaga.adapters.artifact_refs import PgArtifactRefs
from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga.worker.artifacts import ArtifactStore
from tests.integration.test_object_store import GeneratedStream

env, size, bucket, url = json.loads(sys.argv[1])
objects = MinioObjectStore(env["TASKSAGA_S3_ENDPOINT"], env["TASKSAGA_S3_ACCESS_KEY"],
                           env["TASKSAGA_S3_SECRET_KEY"])
pool = ConnectionPool(url, min_size=0, max_size=1, open=True)
store = ArtifactStore(objects, PgArtifactRefs(pool), bucket=bucket)
def status_kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # resets the peak RSS (VmHWM) to the RSS now
baseline = status_kib("VmRSS")
source = GeneratedStream(size)
ref = store.publish(source, "t:Render")
read = sum(len(chunk) for chunk in store.open(ref))
growth_kib = status_kib("VmHWM") - baseline
store.release(ref, "t:Render")
print(json.dumps({"size": ref.size, "read": read, "sha256": ref.sha256,
                  "expected": source.digest.hexdigest(), "growth_kib": growth_kib}))
"""


def test_a_big_artifact_streams_both_ways_in_bounded_rss(
    stack_env: dict[str, str], schema_url: str, bucket: str,
) -> None:
    size = int(os.environ.get("TASKSAGA_ARTIFACT_TEST_MB", "512")) * 1024 * 1024 + 4321
    done = subprocess.run(
        [sys.executable, "-c", _BIG_RUN, json.dumps([stack_env, size, bucket, schema_url])],
        capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"artifact of {size} bytes: peak RSS grew {report['growth_kib']} KiB")
    assert (report["size"], report["read"]) == (size, size)
    assert report["sha256"] == report["expected"]
    # One part in flight per direction, with its copies (the part, the client's upload
    # buffer, the read buffer): a few parts of 8 MiB, whatever the size.
    assert report["growth_kib"] * 1024 < 8 * PART_SIZE, f"RSS grew {report['growth_kib']} KiB"

"""The ObjectStore port's contract: streamed objects come back byte for byte; buckets appear on
first write; deleting is idempotent."""

from __future__ import annotations

import io
import uuid

from tasksaga.core.ports import ObjectStore

BUCKET = "tasksaga-contract-tests"


class ObjectStoreContract:
    """Subclasses provide an ``objects`` fixture."""

    def test_a_streamed_object_comes_back_byte_for_byte(self, objects: ObjectStore) -> None:
        key = f"contract/{uuid.uuid4()}"
        content = bytes(range(256)) * 1000 + b"ragged tail"  # several read chunks
        assert objects.put_stream(BUCKET, key, io.BytesIO(content), "application/zip") == len(
            content)
        assert b"".join(objects.open_stream(BUCKET, key)) == content
        objects.delete(BUCKET, key)

    def test_a_new_bucket_is_made_on_first_write(self, objects: ObjectStore) -> None:
        bucket, key = f"contract-{uuid.uuid4().hex[:16]}", "first"
        objects.put_stream(bucket, key, io.BytesIO(b"hello"))
        assert objects.exists(bucket, key)
        objects.delete(bucket, key)

    def test_an_object_exists_until_deleted_and_deleting_again_is_no_error(
        self, objects: ObjectStore,
    ) -> None:
        key = f"contract/{uuid.uuid4()}"
        assert not objects.exists(BUCKET, key)
        objects.put_stream(BUCKET, key, io.BytesIO(b"data"))
        assert objects.exists(BUCKET, key)
        objects.delete(BUCKET, key)
        assert not objects.exists(BUCKET, key)
        objects.delete(BUCKET, key)  # a compensation that runs twice must not fail
        assert not objects.exists(BUCKET, key)

    def test_writing_a_key_again_replaces_the_object(self, objects: ObjectStore) -> None:
        key = f"contract/{uuid.uuid4()}"
        objects.put_stream(BUCKET, key, io.BytesIO(b"first version, longer"))
        objects.put_stream(BUCKET, key, io.BytesIO(b"second"))
        assert b"".join(objects.open_stream(BUCKET, key)) == b"second"
        objects.delete(BUCKET, key)

    def test_a_presigned_url_names_the_object(self, objects: ObjectStore) -> None:
        key = f"contract/{uuid.uuid4()}"
        objects.put_stream(BUCKET, key, io.BytesIO(b"video"))
        url = objects.presigned_get_url(BUCKET, key, expires_s=60)
        assert f"{BUCKET}/{key}" in url
        objects.delete(BUCKET, key)

    def test_a_copied_object_has_the_same_bytes_and_outlives_its_source(
        self, objects: ObjectStore,
    ) -> None:
        source, target = f"contract/{uuid.uuid4()}", f"contract/{uuid.uuid4()}"
        objects.put_stream(BUCKET, source, io.BytesIO(b"part bytes"))
        objects.copy(BUCKET, source, target)
        objects.delete(BUCKET, source)
        assert b"".join(objects.open_stream(BUCKET, target)) == b"part bytes"
        objects.delete(BUCKET, target)

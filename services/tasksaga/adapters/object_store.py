"""MinIO/S3 object storage, streaming both ways with bounded memory and timeouts."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from datetime import timedelta
from typing import IO, BinaryIO

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import S3Error

PART_SIZE = 10 * 1024 * 1024  # multipart upload part: memory per upload stays at one part
CHUNK_SIZE = 64 * 1024


class MinioObjectStore:
    def __init__(
        self, endpoint: str, access_key: str, secret_key: str, secure: bool = False,
        region: str = "us-east-1", read_timeout_s: float = 60.0,
    ) -> None:
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5.0, read=read_timeout_s),
            retries=urllib3.Retry(total=3, backoff_factor=0.2,
                                  status_forcelist=[500, 502, 503, 504]),
            maxsize=16,
        )
        self._client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
            region=region, http_client=http,
        )

    def ensure_bucket(self, bucket: str) -> None:
        if not self._client.bucket_exists(bucket):
            try:
                self._client.make_bucket(bucket)
            except S3Error as error:
                if error.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def put_stream(
        self, bucket: str, key: str, stream: IO[bytes],
        content_type: str = "application/octet-stream",
    ) -> int:
        """Upload from a stream of unknown length; returns the number of bytes stored."""
        self.ensure_bucket(bucket)
        counter = _CountingReader(stream)
        self._client.put_object(
            bucket, key, typing.cast(BinaryIO, counter), length=-1, part_size=PART_SIZE,
            content_type=content_type,
        )
        return counter.count

    def open_stream(self, bucket: str, key: str) -> Iterator[bytes]:
        response = self._client.get_object(bucket, key)
        try:
            yield from response.stream(CHUNK_SIZE)
        finally:
            response.close()
            response.release_conn()

    def delete(self, bucket: str, key: str) -> None:
        self._client.remove_object(bucket, key)  # S3 delete is idempotent

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self._client.stat_object(bucket, key)
            return True
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                return False
            raise

    def list_objects(self, bucket: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every object of ``bucket``; nothing for a bucket that is missing."""
        if not self._client.bucket_exists(bucket):
            return
        for item in self._client.list_objects(bucket, recursive=True):
            if item.object_name is not None and not item.is_dir:
                yield item.object_name, int(item.size or 0)

    def presigned_get_url(self, bucket: str, key: str, expires_s: int = 3600) -> str:
        return str(self._client.presigned_get_object(bucket, key,
                                                     expires=timedelta(seconds=expires_s)))

    def copy(self, bucket: str, source_key: str, target_key: str) -> None:
        # Server-side copy of one object up to 5 GiB: artifacts copy parts of 8 MiB.
        self._client.copy_object(bucket, target_key, CopySource(bucket, source_key))

    def size(self, bucket: str, key: str) -> int:
        return int(self._client.stat_object(bucket, key).size or 0)


class _CountingReader:
    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data


class StreamReader:
    """A file-like view over an iterator of chunks (to stream an object into zipfile etc.)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

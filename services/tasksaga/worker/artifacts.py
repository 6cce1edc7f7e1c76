"""Content-addressed artifacts on the ObjectStore port, streamed with bounded memory.

Layout in bucket ``artifacts``: the parts of the content with SHA-256 ``H`` are the objects
``sha256/H/000000``, ``sha256/H/000001``, ... (``PART_SIZE`` bytes each, the last shorter).
Identical content is stored once: a publish uploads its parts under ``tmp/<random>/`` while
hashing, then, holding the content's reference (``ArtifactRefs.hold``), copies them into
place only if the last part is not there yet (parts are copied in order and deleted last part
first, so a present last part means a complete content). The temporary parts are then
deleted. A release drops the holder's reference and deletes the parts once nobody holds them.

Reading verifies every part (its length and SHA-256) before any of its bytes are yielded, so
a handler never sees a byte that differs from what was published: a missing part, a short
part, a changed byte or a part that takes longer than ``part_timeout_s`` to read raises
``ArtifactCorrupted`` (retryable) instead. Memory per publish or open: one part. Verified
parts may be kept in a ``PartCache`` (keyed by their SHA-256, bounded in bytes) and served
from it to later reads of the same worker.
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import IO

from tasksaga.core.artifacts import (
    BUCKET,
    PART_SIZE,
    ArtifactCorrupted,
    ArtifactMissing,
    ArtifactNotDeclared,
    ArtifactRef,
    base_name,
    names_under,
)
from tasksaga.core.ports import ArtifactRefs, ObjectStore
from tasksaga.core.steps import StepDef
from tasksaga.worker.artifact_cache import PartCache

CHUNK_SIZE = 64 * 1024  # what a handler's iterator yields at a time


class ArtifactStore:
    def __init__(self, objects: ObjectStore, refs: ArtifactRefs, *, bucket: str = BUCKET,
                 part_size: int = PART_SIZE, part_timeout_s: float = 120.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 cache: PartCache | None = None) -> None:
        if part_size <= 0:
            raise ValueError(f"part_size must be positive, got {part_size}")
        self._objects = objects
        self._refs = refs
        self._bucket = bucket
        self._part_size = part_size
        self._part_timeout_s = part_timeout_s
        self._monotonic = monotonic
        self._cache = cache

    def publish(self, stream: IO[bytes], holder: str) -> ArtifactRef:
        """Store ``stream``'s bytes (once per content) held by ``holder``; its reference."""
        upload = f"tmp/{uuid.uuid4().hex}"
        whole = hashlib.sha256()
        part_hashes: list[str] = []
        size = 0
        try:
            while part := _read_part(stream, self._part_size):
                whole.update(part)
                part_hashes.append(hashlib.sha256(part).hexdigest())
                self._objects.put_stream(self._bucket, f"{upload}/{len(part_hashes) - 1:06d}",
                                         io.BytesIO(part))
                size += len(part)
            ref = ArtifactRef(whole.hexdigest(), size, tuple(part_hashes), self._part_size)
            self._refs.hold(ref.sha256, holder, lambda: self._place(ref, upload))
        finally:
            for index in range(len(part_hashes)):
                self._objects.delete(self._bucket, f"{upload}/{index:06d}")
        return ref

    def release(self, ref: ArtifactRef, holder: str) -> int:
        """Drop ``holder``'s reference; the content goes with the last one. References left."""
        return self._refs.release(ref.sha256, holder, lambda: self._delete(ref))

    def open(self, ref: ArtifactRef) -> Iterator[bytes]:
        """The content in chunks, each part verified before any of its bytes are yielded."""
        whole = hashlib.sha256()
        for index in range(ref.parts):
            part = self._read_verified(ref, index)
            whole.update(part)
            for start in range(0, len(part), CHUNK_SIZE):
                yield part[start:start + CHUNK_SIZE]
        if whole.hexdigest() != ref.sha256:  # parts verified: only a forged reference
            raise ArtifactCorrupted(f"artifact {ref.sha256} reads back as {whole.hexdigest()}")

    def _read_verified(self, ref: ArtifactRef, index: int) -> bytes:
        if self._cache is None:
            return self._read_part(ref, index)
        # Verified when it was put; a part another step is downloading is waited for.
        return self._cache.get_or_load(ref.part_sha256[index],
                                       lambda: self._read_part(ref, index))

    def _read_part(self, ref: ArtifactRef, index: int) -> bytes:
        key, expected = ref.part_key(index), ref.part_length(index)
        where = f"part {index + 1} of {ref.parts} of artifact {ref.sha256} ({self._bucket}/{key})"
        deadline = self._monotonic() + self._part_timeout_s
        buffer = bytearray()
        try:
            for chunk in self._objects.open_stream(self._bucket, key):
                buffer += chunk
                if len(buffer) > expected:
                    raise ArtifactCorrupted(f"{where} is longer than the {expected} bytes "
                                            "published")
                if self._monotonic() > deadline:
                    raise ArtifactCorrupted(f"{where} took over {self._part_timeout_s} s to read")
        except ArtifactCorrupted:
            raise
        except Exception as error:  # a missing object, a connection that broke or timed out
            raise ArtifactCorrupted(f"{where} cannot be read: {type(error).__name__}: "
                                    f"{error}") from error
        if len(buffer) != expected:
            raise ArtifactCorrupted(f"{where} is {len(buffer)} bytes, {expected} were published "
                                    "(a short read or a truncated object)")
        digest = hashlib.sha256(buffer).hexdigest()
        if digest != ref.part_sha256[index]:
            raise ArtifactCorrupted(f"{where} has SHA-256 {digest}, "
                                    f"{ref.part_sha256[index]} was published")
        return bytes(buffer)

    def _place(self, ref: ArtifactRef, upload: str) -> None:
        if ref.parts == 0 or self._objects.exists(self._bucket, ref.part_key(ref.parts - 1)):
            return  # the same content is stored already
        for index in range(ref.parts):  # the last part last: present means complete
            self._objects.copy(self._bucket, f"{upload}/{index:06d}", ref.part_key(index))

    def _delete(self, ref: ArtifactRef) -> None:
        for index in reversed(range(ref.parts)):  # the last part first: absent means incomplete
            self._objects.delete(self._bucket, ref.part_key(index))


class StepArtifacts:
    """``ctx.artifacts``: a step's view, limited to the names its step declares."""

    def __init__(self, store: ArtifactStore, step: StepDef, holder: str,
                 consumed: Mapping[str, str]) -> None:
        self._store = store
        self._step = step
        self._holder = holder
        self._consumed = dict(consumed)
        self.published: dict[str, str] = {}  # name -> ArtifactRef JSON, for the step result

    def publish(self, name: str, stream: IO[bytes]) -> ArtifactRef:
        """Store the bytes of ``stream`` (read to its end) as artifact ``name``."""
        if name not in self._step.produces:
            raise ArtifactNotDeclared(
                f"step {self._step.name!r} publishes artifact {name!r} but declares "
                f"produces={list(self._step.produces)}: add it to the step's produces=")
        ref = self._store.publish(stream, self._holder)
        self.published[name] = ref.to_json()
        return ref

    def open(self, name: str) -> Iterator[bytes]:
        """The bytes of consumed artifact ``name`` (or ``name[i]``), in verified chunks."""
        self._check_consumes(name, "opens")
        raw = self._consumed.get(name)
        if raw is None:
            indexed = names_under(name, self._consumed)
            hint = (f": it was published as {', '.join(map(repr, indexed))}; open those "
                    f"(ctx.artifacts.names({name!r}) lists them)" if indexed and
                    indexed != [name] else " (its producer was skipped, or its handler did "
                    "not call ctx.artifacts.publish)")
            raise ArtifactMissing(
                f"no step before {self._step.name!r} published artifact {name!r}{hint}")
        return self._store.open(ArtifactRef.from_json(raw))

    def names(self, name: str) -> list[str]:
        """The published names under consumed ``name``: ``name`` itself, or ``name[0]``,
        ``name[1]``, ... in index order (none published: empty)."""
        self._check_consumes(name, "lists")
        return names_under(name, self._consumed)

    def _check_consumes(self, name: str, verb: str) -> None:
        if base_name(name) not in self._step.consumes:
            raise ArtifactNotDeclared(
                f"step {self._step.name!r} {verb} artifact {name!r} but declares "
                f"consumes={list(self._step.consumes)}: add {base_name(name)!r} to the "
                "step's consumes=")


def _read_part(stream: IO[bytes], part_size: int) -> bytes:
    """Up to ``part_size`` bytes; fewer only at the end of the stream."""
    pieces: list[bytes] = []
    wanted = part_size
    while wanted > 0:
        piece = stream.read(min(wanted, CHUNK_SIZE))
        if not piece:
            break
        pieces.append(piece)
        wanted -= len(piece)
    return b"".join(pieces)

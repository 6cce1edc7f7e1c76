"""What an archive of one event partition is made of, in object storage:

- ``<prefix>/<partition>/events.avro``: an Avro object container file (deflate) of the
  partition's rows, whole (position, stream, version, type, message id, the payload bytes as the
  log held them, times), ordered by stream and version. The file carries its schema.
- ``<prefix>/<partition>/events.avro.sha256``: its SHA-256 (``sha256sum`` format).
- ``<prefix>/<partition>/manifest.json``: the partition's bounds, the object's key, size and
  SHA-256, and per task its event count and version range.

Payloads are copied, never decoded: task data sealed in the log stays sealed in the archive.
"""

from __future__ import annotations

import hashlib
import json
import typing
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from fastavro import parse_schema, reader, writer

FORMAT_VERSION = 1

ARCHIVED_EVENT_SCHEMA = parse_schema({
    "type": "record", "name": "ArchivedEvent", "namespace": "tasksaga.archive",
    "doc": "One row of the event log, as the events table held it.",
    "fields": [
        {"name": "position", "type": "long"},
        {"name": "stream_id", "type": "string"},
        {"name": "version", "type": "int"},
        {"name": "event_type", "type": "string"},
        {"name": "message_id", "type": "string"},
        {"name": "payload", "type": "bytes"},
        {"name": "recorded_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "stream_opened_at",
         "type": {"type": "long", "logicalType": "timestamp-micros"}},
    ],
})


@dataclass(frozen=True)
class ArchivedEvent:
    position: int
    stream_id: str
    version: int
    event_type: str
    message_id: str
    payload: bytes
    recorded_at: datetime
    stream_opened_at: datetime


@dataclass
class TaskEntry:
    task_id: str
    events: int = 0
    first_version: int = 0
    last_version: int = 0


@dataclass
class Manifest:
    partition: str
    lower_bound: str
    upper_bound: str
    object_key: str
    sha256: str = ""
    size_bytes: int = 0
    event_count: int = 0
    tasks: dict[str, TaskEntry] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def count(self, event: ArchivedEvent) -> None:
        entry = self.tasks.setdefault(event.stream_id, TaskEntry(event.stream_id,
                                                                 first_version=event.version))
        entry.events += 1
        entry.last_version = event.version
        self.event_count += 1

    def to_json(self) -> bytes:
        document = asdict(self)
        document["tasks"] = [asdict(t) for t in self.tasks.values()]
        return json.dumps(document, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        document: dict[str, Any] = json.loads(raw)
        if document.get("format_version") != FORMAT_VERSION:
            raise ArchiveCorrupt(f"manifest format {document.get('format_version')!r} is not "
                                 f"{FORMAT_VERSION}")
        tasks = {t["task_id"]: TaskEntry(**t) for t in document.pop("tasks")}
        return cls(**document, tasks=tasks)


class ArchiveCorrupt(ValueError):
    """An archive does not match its manifest (or cannot be read); the reason says how."""


def object_keys(prefix: str, partition: str) -> tuple[str, str, str]:
    """(events file, checksum file, manifest) of a partition's archive."""
    base = f"{prefix.strip('/')}/{partition}" if prefix.strip("/") else partition
    return f"{base}/events.avro", f"{base}/events.avro.sha256", f"{base}/manifest.json"


def write_events(out: IO[bytes], events: Iterable[ArchivedEvent], manifest: Manifest) -> None:
    """Write the container file to ``out``, counting every event into ``manifest``; sets its
    size and SHA-256 (``out`` must be readable back from the start)."""

    def records() -> Iterator[dict[str, Any]]:
        for event in events:
            manifest.count(event)
            # Not dataclasses.asdict: its deep copy took most of an archive's time.
            yield {"position": event.position, "stream_id": event.stream_id,
                   "version": event.version, "event_type": event.event_type,
                   "message_id": event.message_id, "payload": event.payload,
                   "recorded_at": event.recorded_at, "stream_opened_at": event.stream_opened_at}

    writer(out, ARCHIVED_EVENT_SCHEMA, records(), codec="deflate", sync_interval=256 * 1024)
    out.flush()
    out.seek(0)
    digest = hashlib.sha256()
    while chunk := out.read(1024 * 1024):
        digest.update(chunk)
        manifest.size_bytes += len(chunk)
    manifest.sha256 = digest.hexdigest()
    out.seek(0)


class HashingReader:
    """A file-like view over a stream of chunks that hashes and counts what passes through."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self.digest.update(chunk)
            self.size += len(chunk)
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def drain(self) -> None:
        while self.read(1024 * 1024):
            pass


def read_events(source: HashingReader) -> Iterator[ArchivedEvent]:
    for record in reader(typing.cast(IO[bytes], source)):
        assert isinstance(record, dict)
        yield ArchivedEvent(**{
            **record,
            "recorded_at": _utc(record["recorded_at"]),
            "stream_opened_at": _utc(record["stream_opened_at"]),
        })


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def check_against(manifest: Manifest, source: HashingReader,
                  keep: str | None = None) -> list[ArchivedEvent]:
    """Read the whole container file and check it against ``manifest`` (SHA-256, size, every
    task's count and versions without gaps); returns the events of task ``keep`` (none when
    ``keep`` is None). Raises :class:`ArchiveCorrupt` on any difference."""
    seen = Manifest(manifest.partition, manifest.lower_bound, manifest.upper_bound,
                    manifest.object_key)
    kept = []
    try:
        for event in read_events(source):
            entry = seen.tasks.get(event.stream_id)
            expected = entry.last_version + 1 if entry else manifest.tasks.get(
                event.stream_id, TaskEntry("", first_version=-1)).first_version
            if event.version != expected:
                raise ArchiveCorrupt(f"task {event.stream_id}: version {event.version} where "
                                     f"{expected} was expected")
            seen.count(event)
            if event.stream_id == keep:
                kept.append(event)
        source.drain()
    except ArchiveCorrupt:
        raise
    except Exception as error:  # fastavro raises plain ValueError/EOFError on bad bytes
        raise ArchiveCorrupt(f"{manifest.object_key} cannot be read: {error}") from error
    if source.digest.hexdigest() != manifest.sha256 or source.size != manifest.size_bytes:
        raise ArchiveCorrupt(f"{manifest.object_key}: SHA-256 {source.digest.hexdigest()} "
                             f"({source.size} bytes), the manifest says {manifest.sha256} "
                             f"({manifest.size_bytes} bytes)")
    counts = {t: e.events for t, e in seen.tasks.items()}
    if counts != {t: e.events for t, e in manifest.tasks.items()}:
        missing = sorted(set(manifest.tasks) ^ set(seen.tasks))[:5]
        raise ArchiveCorrupt(f"{manifest.object_key}: per-task counts differ from the "
                             f"manifest (tasks differing: {missing or 'counts only'})")
    return kept

"""Which Postgres cluster (shard) holds a task: a pure mapping, read from configuration.

A task belongs to one of ``BUCKETS`` virtual buckets, by a stable hash of its id (CRC-32, the
same in every process and every Python version, unlike ``hash()``); each bucket is assigned to
one shard. A task's stream, inbox claims, outbox records and timers live on its bucket's shard,
so one transaction on that shard writes them all. Adding a shard moves whole buckets (their
rows are copied while the orchestrators are stopped, then the assignment changes): the bucket
of a task never changes, only where a bucket lives (docs/scaling.md).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BUCKETS = 256
DEFAULT_SHARD = "default"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")


class ShardConfigError(ValueError):
    """The shard configuration is unusable; the message says what to change."""


def bucket_of(task_id: str, buckets: int = BUCKETS) -> int:
    """The task's bucket: CRC-32 of its UTF-8 id, modulo the bucket count."""
    return zlib.crc32(task_id.encode()) % buckets


class WrongShard(Exception):
    """A transaction on one shard was asked to touch a task another shard holds (a routing
    bug: the caller must open the transaction on ``ShardMap.shard_of(task_id)``)."""


@dataclass(frozen=True)
class ShardMap:
    """Shards in their configured order (the first holds the API's own rows) and the shard of
    every bucket (``assignment[b]`` is bucket b's shard)."""

    shards: tuple[str, ...]
    assignment: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.shards:
            raise ShardConfigError("no shard configured: name at least one")
        for name in self.shards:
            if not _NAME.match(name):
                raise ShardConfigError(
                    f"shard name {name!r} is not valid: use 1-31 lower-case letters, digits, "
                    "'-' or '_', starting with a letter")
        if len(set(self.shards)) != len(self.shards):
            raise ShardConfigError(f"shard names repeat: {', '.join(self.shards)}")
        if len(self.assignment) != BUCKETS:
            raise ShardConfigError(f"the assignment covers {len(self.assignment)} buckets; "
                                   f"every one of the {BUCKETS} buckets needs a shard")
        unknown = sorted(set(self.assignment) - set(self.shards))
        if unknown:
            raise ShardConfigError(f"buckets are assigned to unknown shards {', '.join(unknown)};"
                                   f" configured shards: {', '.join(self.shards)}")

    @property
    def home(self) -> str:
        """The first shard: where the rows that belong to no task are kept."""
        return self.shards[0]

    def shard_of(self, task_id: str) -> str:
        return self.assignment[bucket_of(task_id)]

    def check(self, shard: str, task_id: str) -> None:
        """Raise WrongShard unless ``shard`` holds the task."""
        owner = self.shard_of(task_id)
        if owner != shard:
            raise WrongShard(f"task {task_id} (bucket {bucket_of(task_id)}) is on shard "
                             f"{owner}, not on {shard} where this transaction runs")

    def buckets_of(self, shard: str) -> list[int]:
        return [b for b, name in enumerate(self.assignment) if name == shard]

    @classmethod
    def single(cls, name: str = DEFAULT_SHARD) -> ShardMap:
        """One shard holding every bucket: today's single-database deployment."""
        return cls((name,), (name,) * BUCKETS)

    @classmethod
    def even(cls, shards: Sequence[str]) -> ShardMap:
        """Contiguous, equal ranges of buckets, in shard order (a new deployment's default)."""
        count = len(shards)
        if count == 0:
            raise ShardConfigError("no shard configured: name at least one")
        return cls(tuple(shards), tuple(shards[b * count // BUCKETS] for b in range(BUCKETS)))


@dataclass(frozen=True)
class ShardConfig:
    """The shards' database URLs by name, and the bucket map."""

    urls: Mapping[str, str]
    map: ShardMap


def parse_shards(shards: str | None, buckets: str | None, default_url: str) -> ShardConfig:
    """Read ``TASKSAGA_SHARDS`` (``name=postgresql://...`` separated by whitespace or ``;``)
    and ``TASKSAGA_SHARD_BUCKETS`` (``name:first-last[,first-last]`` separated by ``;``; unset:
    equal contiguous ranges). Without shards, one shard at ``default_url`` holds everything."""
    if not shards or not shards.strip():
        if buckets and buckets.strip():
            raise ShardConfigError("TASKSAGA_SHARD_BUCKETS is set but TASKSAGA_SHARDS is not: "
                                   "list the shards (name=postgresql://...) first")
        return ShardConfig({DEFAULT_SHARD: default_url}, ShardMap.single())
    urls: dict[str, str] = {}
    for item in re.split(r"[;\s]+", shards.strip()):
        name, sep, url = item.partition("=")
        if not sep or not url:
            raise ShardConfigError(f"TASKSAGA_SHARDS entry {item!r} is not name=postgresql://...")
        if name in urls:
            raise ShardConfigError(f"TASKSAGA_SHARDS names shard {name!r} twice")
        urls[name] = url
    names = list(urls)
    if not buckets or not buckets.strip():
        return ShardConfig(urls, ShardMap.even(names))
    return ShardConfig(urls, ShardMap(tuple(names), _parse_assignment(buckets, names)))


def _parse_assignment(text: str, names: Sequence[str]) -> tuple[str, ...]:
    assignment: list[str | None] = [None] * BUCKETS
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, sep, ranges = part.partition(":")
        name = name.strip()
        if not sep or not ranges.strip():
            raise ShardConfigError(f"TASKSAGA_SHARD_BUCKETS entry {part!r} is not "
                                   "name:first-last[,first-last]")
        if name not in names:
            raise ShardConfigError(f"TASKSAGA_SHARD_BUCKETS names unknown shard {name!r}; "
                                   f"TASKSAGA_SHARDS lists {', '.join(names)}")
        for span in ranges.split(","):
            first, last = _span(span.strip(), part)
            for bucket in range(first, last + 1):
                if assignment[bucket] is not None:
                    raise ShardConfigError(f"bucket {bucket} is assigned twice (to "
                                           f"{assignment[bucket]} and {name})")
                assignment[bucket] = name
    missing = [b for b, name in enumerate(assignment) if name is None]
    if missing:
        raise ShardConfigError(f"buckets {_ranges(missing)} have no shard: TASKSAGA_SHARD_BUCKETS"
                               f" must assign every bucket 0-{BUCKETS - 1}")
    return tuple(name for name in assignment if name is not None)


def _span(span: str, part: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", span)
    if match is None:
        raise ShardConfigError(f"bucket range {span!r} in {part!r} is not first-last")
    first = int(match[1])
    last = int(match[2]) if match[2] is not None else first
    if not 0 <= first <= last < BUCKETS:
        raise ShardConfigError(f"bucket range {span!r} in {part!r} must lie in 0-{BUCKETS - 1}"
                               " with first <= last")
    return first, last


def _ranges(buckets: Sequence[int]) -> str:
    spans: list[str] = []
    start = prev = buckets[0]
    for bucket in [*buckets[1:], -2]:
        if bucket != prev + 1:
            spans.append(str(start) if start == prev else f"{start}-{prev}")
            start = bucket
        prev = bucket
    return ",".join(spans)

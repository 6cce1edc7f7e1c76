"""Artifacts: named, content-addressed files a step publishes and later steps open.

Pure: the reference a publish records (size, SHA-256, the parts and their SHA-256s), its JSON
form in step results, events and commands, and the errors handlers see. The streaming and the
storage are ``tasksaga.worker.artifacts``'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Protocol

from tasksaga.core.errors import NonRetryableError

#: Bytes per part. A part is the unit that is verified before any of its bytes reach the
#: handler, so memory per open artifact is one part.
PART_SIZE = 8 * 1024 * 1024
BUCKET = "artifacts"


@dataclass(frozen=True)
class ArtifactRef:
    """What a published artifact is: ``sha256`` of the whole content (its address), its size,
    and the SHA-256 of each ``PART_SIZE`` part (the last may be shorter)."""

    sha256: str
    size: int
    part_sha256: tuple[str, ...]
    part_size: int = PART_SIZE

    @property
    def parts(self) -> int:
        return len(self.part_sha256)

    def part_key(self, index: int) -> str:
        return f"sha256/{self.sha256}/{index:06d}"

    def part_length(self, index: int) -> int:
        if index < self.parts - 1:
            return self.part_size
        return self.size - self.part_size * (self.parts - 1)

    def to_json(self) -> str:
        return json.dumps({"sha256": self.sha256, "size": self.size,
                           "part_size": self.part_size, "parts": list(self.part_sha256)},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> ArtifactRef:
        value = json.loads(raw)
        return cls(sha256=value["sha256"], size=int(value["size"]),
                   part_sha256=tuple(value["parts"]), part_size=int(value["part_size"]))


class ArtifactAccess(Protocol):
    """``ctx.artifacts`` (tasksaga.worker.artifacts.StepArtifacts)."""

    def publish(self, name: str, stream: IO[bytes]) -> ArtifactRef:
        """Store the bytes of ``stream`` (read to its end) as artifact ``name``."""
        ...

    def open(self, name: str) -> Iterator[bytes]:
        """The bytes of consumed artifact ``name`` (or ``name[i]``), in verified chunks."""
        ...

    def names(self, name: str) -> list[str]:
        """The published names under consumed ``name``: ``name`` itself, or ``name[0]``,
        ``name[1]``, ... in index order (none published: empty)."""
        ...


class ArtifactNotDeclared(NonRetryableError):
    """A handler published or opened a name its step does not declare (not retried)."""


class ArtifactMissing(NonRetryableError):
    """A consumed artifact has no reference: its producer was skipped or did not publish it
    (not retried: another attempt would find the same references)."""


class ArtifactCorrupted(IOError):
    """What was read differs from what was published (a short read, a missing part, a changed
    byte). Retryable: a transient read error heals, and a store repaired by an operator
    serves the right bytes to the next attempt."""


_INDEXED = re.compile(r"^(?P<base>.+)\[(?P<index>\d+)\]$")


def indexed_name(base: str, index: int) -> str:
    """The name of the ``index``-th artifact published under ``base`` (one file of a
    multi-file upload): ``base[index]``."""
    return f"{base}[{index}]"


def base_name(name: str) -> str:
    """The declared name an artifact name belongs to: ``source`` for ``source[2]``."""
    match = _INDEXED.match(name)
    return match.group("base") if match else name


def names_under(base: str, names: Iterable[str]) -> list[str]:
    """The names of ``names`` published under ``base`` (``base`` itself, ``base[0]``,
    ``base[1]``, ...), indexed ones in index order."""
    def index(name: str) -> int:
        match = _INDEXED.match(name)
        return int(match.group("index")) if match else -1
    return sorted((n for n in names if base_name(n) == base), key=index)


def refs_for(consumed: Iterable[str],
             published: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The references of the names ``consumed`` (and of their indexed names, ``name[i]``),
    from the artifacts of completed steps (the latest producer of a name wins: they are given
    in completion order)."""
    wanted = set(consumed)
    found: dict[str, str] = {}
    for artifacts in published:
        found.update({name: ref for name, ref in artifacts.items()
                      if base_name(name) in wanted})
    return found

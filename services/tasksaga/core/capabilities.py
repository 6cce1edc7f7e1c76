"""Capabilities: what a worker must have to run a step (``requires={"ffmpeg"}``).

A step's commands are routed by Kafka, never by re-enqueueing: each (queue, capability set)
is a step-command topic of its own, ``<queue topic>.cap-<names sorted, joined by ->``, and
only workers that have every capability of the set subscribe to it. The rules here are pure;
the worker detects and checks its own capabilities (``tasksaga.worker.capabilities``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: Lowercase letters, digits and underscores, starting with a letter: the name is part of a
#: Kafka topic and of a consumer group id, and "-" separates names in them.
CAPABILITY_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_SUFFIX = ".cap-"


def invalid_capabilities(names: Iterable[str]) -> list[str]:
    """The names that are not valid capability names (sorted)."""
    return sorted({repr(n) for n in names
                   if not isinstance(n, str) or CAPABILITY_NAME.fullmatch(n) is None})


def capability_set(names: Iterable[str]) -> frozenset[str]:
    """The capability set ``names``, or ValueError saying which names are invalid."""
    names = [names] if isinstance(names, str) else list(names)
    bad = invalid_capabilities(names)
    if bad:
        raise ValueError(
            f"invalid capability name(s) {', '.join(bad)}: a capability is 1 to 32 lowercase "
            "letters, digits or underscores starting with a letter (e.g. ffmpeg, gpu, cuda_12)")
    return frozenset(names)


def capability_suffix(requires: Iterable[str]) -> str:
    """The topic suffix of a capability set: "" for none, else ``.cap-a-b`` (sorted)."""
    names = sorted(capability_set(requires))
    return f"{_SUFFIX}{'-'.join(names)}" if names else ""


def describe(requires: Iterable[str]) -> str:
    return ", ".join(sorted(requires)) or "none"


@dataclass(frozen=True, order=True)
class Route:
    """Where a step's commands go: its queue and the capabilities its worker must have."""

    queue: str
    requires: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        """``video`` or ``video.cap-ffmpeg``: the queue part of its topic and group names."""
        return self.queue + capability_suffix(self.requires)

    def missing(self, offered: Iterable[str]) -> frozenset[str]:
        return self.requires - frozenset(offered)


@dataclass(frozen=True)
class Subscription:
    """The routes a worker consumes, and those of its queues it leaves to capable workers."""

    served: tuple[Route, ...]
    left: tuple[Route, ...]


class MissingCapabilities(Exception):
    """A worker was told to serve steps it cannot run."""


def plan_subscriptions(routes: Iterable[Route], queues: Iterable[str] | None,
                       offered: Iterable[str]) -> Subscription:
    """The routes a worker with capabilities ``offered`` consumes.

    ``queues`` None: every queue of the registered tasks; the routes whose capabilities the
    worker lacks are left to other workers. Queues named explicitly must be served whole: a
    route of theirs needing a capability the worker lacks raises MissingCapabilities naming
    it (a worker deployed for the video queue without ffmpeg is a deployment mistake, better
    refused at start-up than discovered when steps never start)."""
    offered = frozenset(offered)
    wanted = None if queues is None else set(queues)
    chosen = sorted(r for r in set(routes) if wanted is None or r.queue in wanted)
    if wanted is not None:
        lacking = [r for r in chosen if r.missing(offered)]
        if lacking:
            raise MissingCapabilities("; ".join(
                f"queue {r.queue!r} has steps requiring capabilities {describe(r.requires)}: "
                f"this worker lacks {describe(r.missing(offered))}" for r in lacking)
                + f" (it has {describe(offered)}). Install what is missing and list it in "
                "TASKSAGA_WORKER_CAPABILITIES, or leave the queue to a worker that has it")
        # A queue named explicitly gets its plain topic even when no step uses it yet.
        chosen = sorted(set(chosen) | {Route(q) for q in wanted})
    served = tuple(r for r in chosen if not r.missing(offered))
    left = tuple(r for r in chosen if r.missing(offered))
    return Subscription(served, left)

"""One watcher's stream: the log's events after its resume point, then the live fan-out.

The seam between the two is where events could be missed or sent twice, so the order is:
subscribe to the fan-out first, then read the log, then pass live events on only when their
version is the next one. An event committed before the read is in the read; one committed
after it reaches the consumer after the subscription (events reach Kafka only after their
commit: the outbox), so it is queued. A feed that stopped following while idle is first
made to follow again (``follow``), so that "after the subscription" holds. Versions at or
below the last one sent are duplicates (the read and the queue overlap, and Kafka may
redeliver); a version beyond the next one means the live side skipped something (a record
the relay dead-lettered, a consumer reset), and the gap is read from the log. Progress
messages are not versioned and pass through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from tasksaga.api.live.hub import LiveHub, Watcher
from tasksaga.api.live.messages import (
    PROGRESS,
    BadResumePoint,
    LiveMessage,
    dropped_message,
    end_message,
)

REPLAY_PAGE = 500


class EventLog(Protocol):
    async def events_from(self, task_id: str, first_version: int,
                          limit: int) -> list[LiveMessage]:
        """Event messages of the task with version >= first_version, in order."""
        ...

    async def progress(self, task_id: str) -> list[LiveMessage]:
        """The last progress each step reported (the orchestrator's record)."""
        ...


class LiveSession:
    def __init__(self, hub: LiveHub, log: EventLog, task_id: str, after_version: int,
                 keepalive_s: float,
                 follow: Callable[[], Awaitable[None]] | None = None) -> None:
        self._hub = hub
        # Returns once the fan-out's feed reads what is published from then on.
        self._follow = follow
        self._log = log
        self.task_id = task_id
        self.last_version = after_version
        self._keepalive_s = keepalive_s
        self._watcher: Watcher | None = None
        self._backlog: list[LiveMessage] = []
        self.finished = False  # the stream had already ended at the resume point

    async def open(self) -> None:
        """Subscribe, then read the log (in this order: see the module's docstring)."""
        self._watcher = self._hub.watch(self.task_id)
        try:
            if self._follow is not None:
                await self._follow()
            # Read from the resume point itself: if that event was terminal, there is
            # nothing more to send, and the caller answers 204 (an EventSource stops).
            first = max(self.last_version, 1)
            backlog = await self._read(first)
        except BaseException:
            self.close()
            raise
        if self.last_version > 0 and not (backlog and backlog[0].version == self.last_version):
            # Versions come from this log: one it does not hold was never sent by it, and
            # waiting for it would wait forever.
            self.close()
            raise BadResumePoint(f"version {self.last_version} is not in this task's log: "
                                 "resume from an id this stream sent")
        if backlog and backlog[0].version == self.last_version:
            # Ended there, unless an operator's retry (CompensationFailed, NeedsAttention)
            # went on after it.
            self.finished = backlog[0].terminal and len(backlog) == 1
            backlog = backlog[1:]
        self._backlog = backlog
        if self.finished:
            self.close()

    async def _read(self, first_version: int) -> list[LiveMessage]:
        out: list[LiveMessage] = []
        while True:
            page = await self._log.events_from(self.task_id, first_version, REPLAY_PAGE)
            out.extend(page)
            if len(page) < REPLAY_PAGE or page[-1].version is None:
                return out
            first_version = page[-1].version + 1

    def close(self) -> None:
        if self._watcher is not None:
            self._hub.unwatch(self._watcher)
            self._watcher = None

    async def messages(self) -> AsyncIterator[LiveMessage | None]:
        """Messages one by one, None for a keep-alive (see ``batches``)."""
        async for batch in self.batches():
            if not batch:
                yield None
            for message in batch:
                yield message

    async def batches(self) -> AsyncIterator[list[LiveMessage]]:
        """Messages in order, in the batches they became ready in, an empty batch for a
        keep-alive; ends after the terminal event (with an END message) or when the fan-out
        dropped this watcher (with a DROPPED one)."""
        watcher = self._watcher
        if watcher is None:
            return
        try:
            out: list[LiveMessage] = []
            for index, message in enumerate(self._backlog):
                if (ended := self._accept(message)) is not None:
                    out.append(message)
                    # The log's last terminal event ends the stream; an earlier one was
                    # followed by an operator's retry.
                    if ended and index == len(self._backlog) - 1:
                        yield [*out, end_message(self.task_id, message)]
                        return
            self._backlog = []
            out.extend(await self._log.progress(self.task_id))
            if out:
                yield out
            while True:
                first = await watcher.next(self._keepalive_s)
                if first is None:
                    if watcher.dropped is not None:
                        yield [dropped_message(self.task_id, watcher.dropped,
                                               self.last_version)]
                        return
                    yield []
                    continue
                out = []
                for message in [first, *watcher.take_ready()]:
                    if message.kind == PROGRESS:
                        out.append(message)
                        continue
                    for event in await self._in_order(message):
                        if (ended := self._accept(event)) is not None:
                            out.append(event)
                            if ended:
                                yield [*out, end_message(self.task_id, event)]
                                return
                if out:
                    yield out
        finally:
            self.close()

    async def _in_order(self, message: LiveMessage) -> list[LiveMessage]:
        """The live event, preceded by the events of the log it skipped, if any."""
        assert message.version is not None
        if message.version <= self.last_version + 1:
            return [message]
        pending = await self._read(self.last_version + 1)
        return pending if message in pending else [*pending, message]

    def _accept(self, message: LiveMessage) -> bool | None:
        """None to skip (a duplicate, or still beyond a gap); else whether it ends the
        stream. Advances the last version sent."""
        version = message.version
        if version is None or version != self.last_version + 1:
            return None
        self.last_version = version
        return message.terminal

"""The fan-out: per-task watcher queues in memory, fed by the process's one consumer.

Everything here runs on the event loop thread except ``watched``, which the consumer thread
calls to skip decoding records nobody watches (a dict lookup, safe under the GIL). The
consumer hands messages over with ``publish_threadsafe``.

Queues are bounded: a watcher that does not keep up (its client reads slower than events
come) is dropped with a reason instead of growing memory. Nothing is lost by that: every
event is in the log, and the client resumes from the last version it received.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from tasksaga.api.live.messages import LiveMessage


class TooManyWatchers(Exception):
    pass


class Watcher:
    """One client's queue for one task."""

    __slots__ = ("_queue", "_wake", "capacity", "dropped", "task_id")

    def __init__(self, task_id: str, capacity: int) -> None:
        self.task_id = task_id
        self.capacity = capacity
        self.dropped: str | None = None
        self._queue: deque[LiveMessage] = deque()
        self._wake = asyncio.Event()

    def offer(self, message: LiveMessage) -> bool:
        """Queue ``message``; False (and the watcher dropped) when its queue is full."""
        if self.dropped is not None:
            return False
        if len(self._queue) >= self.capacity:
            self.drop(f"too slow: {self.capacity} messages were waiting; resume with "
                      "Last-Event-ID (or after_version)")
            return False
        self._queue.append(message)
        self._wake.set()
        return True

    def drop(self, reason: str) -> None:
        self.dropped = reason
        self._queue.clear()
        self._wake.set()

    async def next(self, timeout_s: float) -> LiveMessage | None:
        """The next message; None after ``timeout_s`` of silence or once dropped."""
        if not self._queue and self.dropped is None:
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout_s):  # no extra task, unlike wait_for
                    await self._wake.wait()
            except TimeoutError:
                return None
        if self.dropped is not None or not self._queue:
            return None
        return self._queue.popleft()

    def take_ready(self) -> list[LiveMessage]:
        """Every message already queued (sent together: one write for a burst)."""
        ready = list(self._queue)
        self._queue.clear()
        return ready

    @property
    def pending(self) -> int:
        return len(self._queue)


class LiveHub:
    def __init__(self, capacity: int = 256, max_watchers: int = 10_000) -> None:
        self.capacity = capacity
        self.max_watchers = max_watchers
        self._watchers: dict[str, set[Watcher]] = {}
        self._count = 0
        self.delivered = 0  # messages queued, for the benchmark and logs
        self.dropped = 0  # watchers dropped for being too slow
        self.closing: str | None = None

    def watch(self, task_id: str) -> Watcher:
        if self.closing is not None:
            raise TooManyWatchers(self.closing)
        if self._count >= self.max_watchers:
            raise TooManyWatchers(f"this API process already serves {self._count} watchers "
                                  f"(TASKSAGA_API_LIVE_MAX_WATCHERS); try again later")
        watcher = Watcher(task_id, self.capacity)
        self._watchers.setdefault(task_id, set()).add(watcher)
        self._count += 1
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        watchers = self._watchers.get(watcher.task_id)
        if watchers is None or watcher not in watchers:
            return
        watchers.discard(watcher)
        self._count -= 1
        if not watchers:
            del self._watchers[watcher.task_id]

    def watched(self, task_id: str) -> bool:
        return task_id in self._watchers

    @property
    def watchers(self) -> int:
        return self._count

    def publish(self, messages: Iterable[LiveMessage]) -> None:
        for message in messages:
            for watcher in tuple(self._watchers.get(message.task_id, ())):
                if watcher.offer(message):
                    self.delivered += 1
                else:
                    self.dropped += 1
                    self.unwatch(watcher)  # it gets nothing more; its session says why

    def shutdown(self, reason: str) -> None:
        """End every stream (their clients resume on another replica) and take no more:
        the server's graceful shutdown would otherwise wait for streams that never end."""
        self.closing = reason
        self.drop_all(reason)

    def drop_all(self, reason: str) -> None:
        for watchers in list(self._watchers.values()):
            for watcher in list(watchers):
                watcher.drop(reason)
        self._watchers.clear()
        self._count = 0

    def publish_threadsafe(self, loop: asyncio.AbstractEventLoop,
                           messages: list[LiveMessage]) -> None:
        if messages and not loop.is_closed():
            loop.call_soon_threadsafe(self.publish, messages)

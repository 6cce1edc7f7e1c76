"""Start reports, sent only for the steps still running a moment after they started.

The start report tells the orchestrator a worker started the attempt: its step timeout (and
heartbeat deadline) then count from now rather than from the dispatch. Most steps finish in
milliseconds, and their result says as much; a report for each would be a Kafka record and an
orchestrator transaction per step for nothing. So a step's report waits ``delay_ms``: a step
that finishes first cancels it, one still running then has it sent (its deadlines count that
much later, which is negligible against any timeout). A report is sent before the result of
its step or not at all: both are produced under one lock, in that order, on one producer.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Hashable

Send = Callable[[], None]


class StartReports:
    def __init__(self, delay_ms: int, now_ms: Callable[[], int]) -> None:
        if delay_ms < 0:
            raise ValueError(f"the start report delay must not be negative, got {delay_ms}")
        self._delay_ms = delay_ms
        self._now_ms = now_ms
        self._lock = threading.Condition()
        self._due: list[tuple[int, int, Hashable]] = []  # (due, order, key), a heap
        self._pending: dict[Hashable, Send] = {}
        self._order = 0
        self.sent = 0  # reports sent (a figure for tests)
        self._thread: threading.Thread | None = None

    def started(self, key: Hashable, send: Send) -> None:
        """The step of ``key`` started: send its report unless it finishes within the delay."""
        if self._delay_ms == 0:
            send()
            self.sent += 1
            return
        with self._lock:
            self._ensure_thread()
            self._order += 1
            self._pending[key] = send
            heapq.heappush(self._due, (self._now_ms() + self._delay_ms, self._order, key))
            self._lock.notify()

    def finished(self, key: Hashable) -> None:
        """The step's result is about to be sent: its report, if not sent yet, never is."""
        with self._lock:
            self._pending.pop(key, None)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="start-reports", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        with self._lock:
            while True:
                now = self._now_ms()
                while self._due and self._due[0][0] <= now:
                    _, _, key = heapq.heappop(self._due)
                    send = self._pending.pop(key, None)
                    if send is not None:  # under the lock: before the step's result
                        send()
                        self.sent += 1
                wait_ms = self._due[0][0] - now if self._due else None
                self._lock.wait(None if wait_ms is None else wait_ms / 1000)

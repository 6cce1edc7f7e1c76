"""Which running steps have been cancelled: set by the broadcast cancellation consumer,
read by handlers through their context's signal."""

from __future__ import annotations

import threading
from collections import OrderedDict

StepKey = tuple[str, str, int]  # task id, step, attempt


class CancellationBook:
    REMEMBERED = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[StepKey, threading.Event] = {}
        # Cancellations that arrived before their step started (the command was still queued).
        self._early: OrderedDict[StepKey, None] = OrderedDict()

    def register(self, key: StepKey) -> threading.Event:
        with self._lock:
            signal = threading.Event()
            if key in self._early:
                signal.set()
            self._running[key] = signal
            return signal

    def unregister(self, key: StepKey) -> None:
        with self._lock:
            self._running.pop(key, None)

    def cancel(self, key: StepKey) -> bool:
        """Fire the step's signal; True when the step is running in this process."""
        with self._lock:
            signal = self._running.get(key)
            if signal is not None:
                signal.set()
                return True
            self._early[key] = None
            if len(self._early) > self.REMEMBERED:
                self._early.popitem(last=False)
            return False

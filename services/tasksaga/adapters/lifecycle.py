"""Process lifecycle for the services: a stop event set by SIGTERM/SIGINT, named threads."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)


def stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def start_thread(name: str, target: Callable[[], None], stop: threading.Event) -> threading.Thread:
    """Run ``target``; if it dies unexpectedly the whole service stops (no silent half-service)."""

    def guarded() -> None:
        try:
            target()
        except Exception:
            log.exception("thread %s crashed; stopping the service", name)
            stop.set()

    thread = threading.Thread(target=guarded, name=name, daemon=True)
    thread.start()
    return thread

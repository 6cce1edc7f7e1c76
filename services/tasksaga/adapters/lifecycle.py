"""Process lifecycle for the services: a stop event set by SIGTERM/SIGINT, named threads."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)


class ServiceStop(threading.Event):
    """Set to stop the service; ``failed`` tells the exit code whether a part crashed."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def fail(self) -> None:
        self.failed = True
        self.set()

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def stop_on_signals() -> ServiceStop:
    stop = ServiceStop()

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def start_thread(name: str, target: Callable[[], None], stop: ServiceStop) -> threading.Thread:
    """Run ``target``; if it dies unexpectedly the whole service stops with a failure exit
    code (no silent half-service: the supervisor restarts it)."""

    def guarded() -> None:
        try:
            target()
        except Exception:
            log.exception("thread %s crashed; stopping the service", name)
            stop.fail()

    thread = threading.Thread(target=guarded, name=name, daemon=True)
    thread.start()
    return thread

"""Submitting ZIP tasks while the orchestrator is killed with SIGKILL, for the crash tests."""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from tests.e2e.conftest import System


def submit_killing_the_orchestrator(system: System, tasks: int, kill_after: int,
                                    workers: int) -> tuple[list[str], datetime]:
    """Submit ``tasks`` ZIP tasks from ``workers`` threads and SIGKILL the orchestrator once
    ``kill_after`` are accepted, mid-flight; every submission must still be accepted (the API
    does not need the orchestrator). The accepted task ids, and when the kill was sent."""
    accepted: list[str] = []
    some_accepted = threading.Event()
    lock = threading.Lock()

    def submit(index: int) -> None:
        reply = system.submit_zip({f"f{index}.txt": f"file {index}\n".encode() * 100})
        assert reply.status_code == 202, reply.text
        with lock:
            accepted.append(reply.json()["task_id"])
            if len(accepted) >= kill_after:
                some_accepted.set()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(submit, i) for i in range(tasks)]
        assert some_accepted.wait(60)
        system.services.kill("orchestrator", signal.SIGKILL)  # no goodbye
        killed_at = datetime.now(UTC)
        for future in futures:
            future.result()
    return accepted, killed_at

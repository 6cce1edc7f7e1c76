"""The chaos suite's harness: the four services as real processes on the local stack, load,
the ledger of step effects (counted in tests/chaos/ledger.py), and the invariants every run
must keep.

``CHAOS_SCALE`` picks the counts: ``reduced`` (the default, run by ``make test``) or ``full``
(``make chaos``). Each test prints one figure line ("R1 lost=0 ...") and appends it, as JSON,
to ``.run/chaos-figures.jsonl``, from which docs/reliability.md tables the last full run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg

from localrun import REPO, ServiceProcesses, local_payload_cipher, local_token, service_env
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.core.state import fold
from tests.chaos.ledger import Ledger, LedgerRun
from tests.chaos.ledger_tasks import LEDGER_DDL
from tests.e2e.checks import log_problems
from tests.e2e.conftest import System, free_port

TERMINAL = ("Completed", "Failed", "Cancelled", "CompensationFailed")


def not_terminal(statuses: dict[str, str]) -> dict[str, str]:
    return {t: s for t, s in statuses.items() if s not in TERMINAL}
FIGURES = REPO / ".run" / "chaos-figures.jsonl"
SCALES = ("reduced", "full")


def scale() -> str:
    value = os.environ.get("CHAOS_SCALE", "reduced")
    if value not in SCALES:
        raise ValueError(f"CHAOS_SCALE={value!r}: use one of {', '.join(SCALES)}")
    return value


def pick(reduced: int, full: int) -> int:
    """A count for the current scale."""
    return full if scale() == "full" else reduced


def figure(row: str, **values: Any) -> str:
    """Print one test's figure line and append it to the figures file."""
    text = " ".join(f"{key}={_fmt(value)}" for key, value in values.items())
    line = f"{row} {text} (scale={scale()})"
    print(line)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a") as out:
        out.write(json.dumps({"row": row, "scale": scale(), "at": datetime.now(UTC).isoformat(),
                              **{k: _plain(v) for k, v in values.items()}}) + "\n")
    return line


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _plain(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(round(fraction * (len(ordered) - 1)), len(ordered) - 1)]


def ensure_ledger(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(7201777)")  # CREATE IF NOT EXISTS races itself
        try:
            conn.execute(LEDGER_DDL)
        finally:
            conn.execute("SELECT pg_advisory_unlock(7201777)")


# -- the running system ----------------------------------------------------------------------


@dataclass
class Chaos:
    system: System
    database_url: str
    accepted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)  # time.time() of each 202
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def services(self) -> Any:
        return self.system.services

    @property
    def prefix(self) -> str:
        return self.system.prefix

    def client(self) -> httpx.Client:
        """A client of its own (httpx clients are not shared across threads here)."""
        return httpx.Client(base_url=self.system.client.base_url, timeout=30,
                            headers=dict(self.system.client.headers))

    def submit(self, task_type: str = "ChaosSaga", idempotency_key: str | None = None,
               client: httpx.Client | None = None, **request: Any) -> str | None:
        """One submission; its task id when accepted (202), else None (the refusal is kept)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        try:
            reply = (client or self.system.client).post(
                f"/tasks/{task_type}", json=request, headers=headers, timeout=30)
        except httpx.HTTPError as error:
            with self._lock:
                self.refused.append(f"{type(error).__name__}: {error}")
            return None
        if reply.status_code != 202:
            with self._lock:
                self.refused.append(f"{reply.status_code}: {reply.text[:200]}")
            return None
        task_id = str(reply.json()["task_id"])
        with self._lock:
            self.accepted.append(task_id)
            self.acked_at.append(time.time())
        return task_id

    def submit_many(self, count: int, threads: int = 4, **request: Any) -> list[str]:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            ids = list(pool.map(lambda _: self.submit(**request), range(count)))
        return [task_id for task_id in ids if task_id is not None]

    @contextlib.contextmanager
    def load(self, rate_per_s: float, **request: Any) -> Iterator[list[str]]:
        """Submit at a steady rate in the background while the body runs (open loop)."""
        stop = threading.Event()
        ids: list[str] = []

        def run() -> None:
            with self.client() as client:
                started = time.monotonic()
                sent = 0
                while not stop.is_set():
                    due = started + sent / rate_per_s
                    if time.monotonic() < due:
                        stop.wait(due - time.monotonic())
                        continue
                    task_id = self.submit(client=client, **request)
                    sent += 1
                    if task_id is not None:
                        ids.append(task_id)

        thread = threading.Thread(target=run, name="chaos-load", daemon=True)
        thread.start()
        try:
            yield ids
        finally:
            stop.set()
            thread.join(timeout=60)

    # -- observation --------------------------------------------------------------------------

    def unavailability_s(self, since: float, until: float) -> float:
        """The longest time between ``since`` and ``until`` without an acknowledged
        submission."""
        edges = [since, *sorted(t for t in self.acked_at if since <= t <= until), until]
        return max(b - a for a, b in itertools.pairwise(edges))

    def statuses(self, task_ids: Sequence[str]) -> dict[str, str]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute("SELECT task_id, status FROM task_status WHERE task_id = ANY(%s)",
                                (list(task_ids),)).fetchall()
        return {r[0]: r[1] for r in rows}

    def settle(self, task_ids: Sequence[str], timeout_s: float,
               check_alive: bool = True) -> dict[str, str]:
        """Every task's status ("missing" when not projected) once all are terminal or the
        time is up: tests print their figure before asserting on it."""
        deadline = time.monotonic() + timeout_s
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            statuses = self.statuses(task_ids)
            if len(statuses) == len(set(task_ids)) and all(
                    s in TERMINAL for s in statuses.values()):
                break
            if check_alive:
                self.services.check_alive()
            time.sleep(0.5)
        return {t: statuses.get(t, "missing") for t in task_ids}

    def wait_terminal(self, task_ids: Sequence[str], timeout_s: float,
                      check_alive: bool = True) -> dict[str, str]:
        """Statuses once every task is terminal; raises naming the stragglers otherwise."""
        statuses = self.settle(task_ids, timeout_s, check_alive)
        stragglers = {t: s for t, s in statuses.items() if s not in TERMINAL}
        if stragglers:
            raise AssertionError(
                f"{len(stragglers)} of {len(task_ids)} tasks not terminal after "
                f"{timeout_s:.0f} s: {dict(list(stragglers.items())[:10])}")
        return statuses

    def log_problems(self, task_ids: Sequence[str]) -> list[str]:
        return log_problems(self.database_url, list(task_ids))

    def projection_mismatches(self, task_ids: Sequence[str]) -> list[str]:
        """Tasks whose projected status/version differ from the fold of their own log."""
        codec = AvroCodec(cipher=local_payload_cipher())
        problems: list[str] = []
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            projected = {r[0]: (r[1], r[2]) for r in conn.execute(
                "SELECT task_id, status, version FROM task_status WHERE task_id = ANY(%s)",
                (list(task_ids),)).fetchall()}
            for task_id in task_ids:
                rows = conn.execute("SELECT payload FROM events WHERE stream_id = %s"
                                    " ORDER BY version", (task_id,)).fetchall()
                state = fold([codec.decode(bytes(r[0])).payload for r in rows])
                replayed = (state.status.value, state.version)
                if projected.get(task_id) != replayed:
                    problems.append(f"{task_id}: projected {projected.get(task_id)}, "
                                    f"replayed {replayed}")
        return problems

    def ledger(self, task_ids: Sequence[str]) -> Ledger:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT task_id, step, kind, idempotency_key, attempt, applied, stable_key,"
                " extract(epoch FROM started_at), extract(epoch FROM ended_at)"
                " FROM chaos_ledger WHERE task_id = ANY(%s) ORDER BY id",
                (list(task_ids),)).fetchall()
            effects = conn.execute(
                "SELECT task_id, step, kind, count(*) FROM chaos_effects"
                " WHERE task_id = ANY(%s) GROUP BY 1, 2, 3", (list(task_ids),)).fetchall()
        return Ledger(
            runs=[LedgerRun(r[0], r[1], r[2], r[3], r[4], r[5], r[6], float(r[7]), float(r[8]))
                  for r in rows],
            effects={(r[0], r[1], r[2]): int(r[3]) for r in effects},
        )

    def events_of_type(self, task_ids: Sequence[str], *event_types: str) -> int:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM events WHERE stream_id = ANY(%s)"
                               " AND event_type = ANY(%s)",
                               (list(task_ids), list(event_types))).fetchone()
        return int(row[0]) if row else 0

    def step_failures(self, task_ids: Sequence[str], error_type: str) -> int:
        """StepFailed/StepCompensationFailed events of the tasks with that error type."""
        codec = AvroCodec(cipher=local_payload_cipher())
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute("SELECT payload FROM events WHERE stream_id = ANY(%s) AND"
                                " event_type IN ('StepFailed', 'StepCompensationFailed')",
                                (list(task_ids),)).fetchall()
        return sum(1 for r in rows
                   if getattr(codec.decode(bytes(r[0])).payload, "error_type", "") == error_type)

    @contextlib.contextmanager
    def supervised(self) -> Iterator[list[str]]:
        """Restart any service that exits while the body runs, as Kubernetes would; yields
        the names restarted (one entry per restart)."""
        stop = threading.Event()
        restarts: list[str] = []

        def watch() -> None:
            while not stop.wait(0.5):
                for name, process in list(self.services.processes.items()):
                    if process.poll() is None:
                        continue
                    restarts.append(name)
                    self.services.processes.pop(name)
                    self.services.start(name)

        thread = threading.Thread(target=watch, name="chaos-supervisor", daemon=True)
        thread.start()
        try:
            yield restarts
        finally:
            stop.set()
            thread.join(timeout=10)

    # -- faults -------------------------------------------------------------------------------

    def kill(self, name: str) -> float:
        """SIGKILL a service's process group; returns the moment (epoch seconds)."""
        moment = time.time()
        self.services.kill(name, signal.SIGKILL)
        return moment

    def wait_exit(self, name: str, timeout_s: float) -> bool:
        """Wait for a service to die by itself (a fault point); True if it did."""
        process: subprocess.Popen[bytes] = self.services.processes[name]
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        self.services.processes.pop(name)
        return True

    def first_event_after(self, moment: float, timeout_s: float) -> float | None:
        """Epoch seconds of the first event appended after ``moment``, or None."""
        deadline = time.monotonic() + timeout_s
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute("SELECT extract(epoch FROM min(recorded_at)) FROM events"
                                   " WHERE recorded_at > to_timestamp(%s)", (moment,)).fetchone()
                if row is not None and row[0] is not None:
                    return float(row[0])
                time.sleep(0.05)
        return None


CHAOS_ENV = {
    "TASKSAGA_TASK_MODULES": "tests.chaos.ledger_tasks",
    "TASKSAGA_INSECURE_DEV": "1",
    "TASKSAGA_LOG_LEVEL": "INFO",
    # The suite's load is one tenant's; per-tenant rate limits are not what it measures.
    "TASKSAGA_API_RATE_LIMIT_REQUESTS": "0",
}


@contextlib.contextmanager
def chaos_system(stack_env: dict[str, str], **extra_env: str) -> Iterator[Chaos]:
    """The four services on a fresh topic prefix (as tests/e2e's running_system), knowing
    the chaos task module; an inherited PYTHONPATH is kept behind the repository's."""
    ensure_ledger(stack_env["TASKSAGA_DATABASE_URL"])
    prefix = f"chaos{uuid.uuid4().hex[:8]}"
    port = free_port()
    python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = service_env(stack_env, port, TASKSAGA_TOPIC_PREFIX=prefix,
                      TASKSAGA_ORCHESTRATOR_INSTANCE_ID=f"{prefix}-orchestrator-0",
                      # As deploy/k8s names them by pod: a killed and restarted service
                      # rejoins its groups at once (a second instance needs its own id).
                      TASKSAGA_WORKER_INSTANCE_ID=f"{prefix}-worker-0",
                      PYTHONPATH=python_path, **{**CHAOS_ENV, **extra_env})
    services = ServiceProcesses(env, REPO / ".run" / "chaos-logs" / prefix, port)
    chaos: Chaos | None = None
    try:
        services.start_all()
        token = local_token(tenant="default", subject="chaos", lifetime_s=4 * 3600,
                            secret=env["TASKSAGA_AUTH_HS256_SECRET"])
        with httpx.Client(base_url=services.api_url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            chaos = Chaos(System(services, client, prefix, env),
                          stack_env["TASKSAGA_DATABASE_URL"])
            yield chaos
    finally:
        services.stop_all()
        if chaos is not None:
            _forget_timers(chaos)


def _forget_timers(chaos: Chaos) -> None:
    """Timers are claimed by task type, not deployment: a later run's orchestrator would
    adopt this run's unfinished tasks (a test that failed leaves some). Drop them."""
    with psycopg.connect(chaos.database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM timers WHERE task_id = ANY(%s)", (list(chaos.accepted),))

"""R10: Postgres dies by SIGKILL under load and is restarted (tools/stack's Postgres service).

Every submission the API acknowledged with 202 must be in the log afterwards and reach a
terminal state. A service may exit when its database dies; the harness restarts it, as
Kubernetes would, and counts the restarts. The Postgres killed is a throwaway cluster of the
test's own (its own folder and port, started by the same stack code), so the shared stack
keeps serving everyone else.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

import stack_tool
from localrun import REPO
from tasksaga.adapters.migrations import apply_migrations
from tests.chaos.harness import chaos_system, figure, not_terminal, pick

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

PG_PORT = 21532  # below the ephemeral range, apart from the stack-tool test's 21432


@pytest.fixture
def own_postgres() -> Iterator[tuple[stack_tool.Postgres, str]]:
    # Under the repository (not pytest's 0700 tmp dirs): the postgres user must reach it.
    home = REPO / ".run" / f"chaos-pg-{uuid.uuid4().hex[:8]}"
    settings = stack_tool.Settings.from_env({
        "TASKSAGA_STACK_DIR": str(home), "TASKSAGA_PG_PORT": str(PG_PORT)})
    postgres = stack_tool.Postgres(settings)
    postgres.start()
    postgres.wait_ready(60)
    url = (f"postgresql://{settings.pg_user}:{settings.pg_password}@127.0.0.1:{PG_PORT}/"
           f"{settings.pg_db}")
    apply_migrations(url)
    try:
        yield postgres, url
    finally:
        pid = postgres.pid()
        if pid is not None:
            postgres.stop(pid)
        shutil.rmtree(home, ignore_errors=True)


def _restart(postgres: stack_tool.Postgres, timeout_s: float = 60) -> float:
    """Start again after a crash; backends of the dead postmaster may hold its shared memory
    for a moment, so retry. Returns the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            postgres.start()
            postgres.wait_ready(30)
            return time.monotonic() - started
        except stack_tool.StackError:
            if time.monotonic() - started > timeout_s:
                raise
            time.sleep(0.5)


def test_postgres_sigkill_under_load_loses_no_acknowledged_submission(
    stack_env: dict[str, str], own_postgres: tuple[stack_tool.Postgres, str],
) -> None:
    postgres, url = own_postgres
    kills = pick(reduced=1, full=5)
    env = {**stack_env, "TASKSAGA_DATABASE_URL": url}
    outages: list[float] = []
    with chaos_system(env) as chaos, chaos.supervised() as restarts:
        with chaos.load(rate_per_s=6.0, sleep_ms=20):
            for _ in range(kills):
                time.sleep(4.0)
                pid = postgres.pid()
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                time.sleep(2.0)
                outages.append(2.0 + _restart(postgres))
            time.sleep(4.0)
        accepted = list(chaos.accepted)
        statuses = chaos.settle(accepted, timeout_s=180, check_alive=False)
        with psycopg.connect(url, autocommit=True) as conn:
            logged = {r[0] for r in conn.execute(
                "SELECT stream_id FROM events WHERE version = 1 AND stream_id = ANY(%s)",
                (accepted,)).fetchall()}
        log = chaos.log_problems(accepted)

    missing = [t for t in accepted if t not in logged]
    figure("R10", kills=kills, accepted=len(accepted), refused=len(chaos.refused),
           acked_but_missing=len(missing),
           not_terminal=len(not_terminal(statuses)),
           not_completed=sum(1 for s in statuses.values() if s != "Completed"),
           outage_s=max(outages), service_restarts=len(restarts))
    assert missing == []
    assert set(statuses.values()) == {"Completed"}
    assert log == []

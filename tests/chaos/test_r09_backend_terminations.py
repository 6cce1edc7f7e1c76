"""R9: every Postgres connection of the services is terminated, again and again, under load.

``pg_terminate_backend`` ends each backend whether it is idle, running a statement or inside a
transaction (the orchestrator's batches, the relay's publish, the projector, the API's reads).
Only this test's services are hit: their connections are found by the client ports their
processes hold (the database is shared with other tests). Services must reconnect, the API
may fail only briefly, and nothing may be lost or duplicated.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
import pytest

from tests.chaos.harness import chaos_system, figure, not_terminal, pick

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]


def _client_ports(pids: list[int], server_port: int) -> set[int]:
    """Local ports of the processes' TCP connections to ``server_port`` (from /proc)."""
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            for fd in fd_dir.iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def test_terminated_backends_are_survived_without_loss_or_duplicates(
    stack_env: dict[str, str], database_url: str,
) -> None:
    rounds = pick(reduced=4, full=30)
    pg_port = int(stack_env["TASKSAGA_DATABASE_URL"].rsplit(":", 1)[1].split("/")[0])
    terminated = 0
    in_transaction = 0
    with chaos_system(stack_env) as chaos:
        with chaos.load(rate_per_s=5.0, sleep_ms=20), \
                psycopg.connect(database_url, autocommit=True) as admin:
            time.sleep(3.0)
            for _ in range(rounds):
                pids = [p.pid for p in chaos.services.processes.values()]
                ports = sorted(_client_ports(pids, pg_port))
                rows = admin.execute(
                    "SELECT pid, state FROM pg_stat_activity WHERE client_port = ANY(%s)"
                    " AND client_addr IS NOT NULL", (ports,)).fetchall()
                for backend, state in rows:
                    admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
                    terminated += 1
                    in_transaction += state in ("idle in transaction", "active")
                time.sleep(2.0)
            time.sleep(3.0)
        accepted = list(chaos.accepted)
        statuses = chaos.settle(accepted, timeout_s=120, check_alive=False)
        log = chaos.log_problems(accepted)
        ledger = chaos.ledger(accepted)
        crashed = sorted(name for name, process in chaos.services.processes.items()
                         if process.poll() is not None)

    server_errors = [r for r in chaos.refused if r.startswith("5")]
    figure("R9", rounds=rounds, terminated=terminated, busy_when_terminated=in_transaction,
           tasks=len(accepted), not_terminal=len(not_terminal(statuses)),
           api_5xx=len(server_errors), other_refusals=len(chaos.refused) - len(server_errors),
           log_problems=len(log), doubled_effects=len(ledger.doubled_effects()),
           services_exited=len(crashed))
    assert crashed == [], f"services that died of a terminated connection: {crashed}"
    assert not_terminal(statuses) == {}
    assert set(statuses.values()) == {"Completed"}
    assert log == []
    assert ledger.doubled_effects() == []
    # A submit whose connection was cut may fail (503, retryable), but not more than the
    # requests in flight during the terminations.
    assert len(server_errors) <= 2 * rounds, server_errors[:5]
    assert len(chaos.refused) == len(server_errors), chaos.refused[:5]

"""Runs the four services as local processes (for `make demo` and the end-to-end tests).

Each service is its own OS process started from the virtualenv's console scripts, with its
log in <log_dir>/<name>.log. Processes can be killed (SIGKILL included) and restarted.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasksaga.adapters.payload_crypto import PayloadCipher

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SERVICES = ("orchestrator", "worker", "notifier", "api")


@dataclass
class ServiceProcesses:
    env: dict[str, str]
    log_dir: Path
    api_port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)
    # TASKSAGA_METRICS_PORT of each service, by exact name (a second "worker#2" gets none:
    # two processes cannot share a port).
    metrics_ports: dict[str, int] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def ops_url(self, name: str) -> str:
        """The /metrics and /health/* endpoint of a service started with a metrics port."""
        return f"http://127.0.0.1:{self.metrics_ports[name]}"

    def start(self, name: str, extra_env: Mapping[str, str] | None = None) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        generation = self.generations.get(name, 0) + 1
        self.generations[name] = generation
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        log.write(f"\n==== start #{generation} of {name} ====\n".encode())
        log.flush()
        base = name.split("#")[0]
        self.processes[name] = subprocess.Popen(
            [str(BIN / f"tasksaga-{base}")],
            env={**self.env, **self._ops_env(name), **(extra_env or {})},
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            start_new_session=True,
        )
        log.close()

    def _ops_env(self, name: str) -> dict[str, str]:
        port = self.metrics_ports.get(name)
        return {} if port is None else {"TASKSAGA_METRICS_PORT": str(port)}

    def start_all(self) -> None:
        for name in SERVICES:
            self.start(name)
        self.wait_until_ready()

    def wait_until_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.api_url}/health/ready", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"the API was not ready within {timeout_s} s; see {self.log_dir}")

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.log_dir / f"{name.split('#')[0]}.log")
                raise RuntimeError(
                    f"service {name} exited with {process.returncode}; log: {tail}\n"
                    + self.log_tail(name)
                )

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ops_ready(self, name: str, timeout_s: float = 60.0) -> None:
        """Until the service's /health/ready (on its metrics port) answers 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.ops_url(name)}/health/ready",
                                            timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{name} was not ready within {timeout_s} s; see {self.log_dir}")

    def terminate(self, name: str, timeout_s: float = 60.0) -> int:
        """SIGTERM, as Kubernetes stops a pod, and wait for the process to drain and exit;
        its exit code (0 for a clean stop)."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGTERM)
        return process.wait(timeout=timeout_s)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def stop_all(self, timeout_s: float = 20.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()


SECRETS_FILE = REPO / ".stack" / "local-secrets.json"


def local_secrets() -> dict[str, str]:
    """This machine's development secrets: made once, kept in the git-ignored .stack/ folder
    (never in the repository), so tokens minted by `make demo` keep working across runs."""
    if SECRETS_FILE.exists():
        stored: dict[str, str] = json.loads(SECRETS_FILE.read_text())
        return stored
    made = {
        "TASKSAGA_AUTH_HS256_SECRET": secrets.token_urlsafe(48),
        "TASKSAGA_TASK_ID_SECRET": secrets.token_urlsafe(48),
        "TASKSAGA_PAYLOAD_KEYS": "local1:" + base64.b64encode(os.urandom(32)).decode(),
    }
    SECRETS_FILE.parent.mkdir(parents=True, exist_ok=True)
    SECRETS_FILE.touch(mode=0o600)
    SECRETS_FILE.write_text(json.dumps(made, indent=2))
    return made


def local_token(tenant: str = "default", subject: str = "local-user",
                roles: tuple[str, ...] = ("tasksaga:operator",), lifetime_s: int = 3600,
                secret: str | None = None) -> str:
    """A bearer token signed with the local HS256 secret (what `tasksaga-token` prints)."""
    from tasksaga.api.identity import mint_token

    key = secret or local_secrets()["TASKSAGA_AUTH_HS256_SECRET"]
    return mint_token(key, subject=subject, tenant=tenant, roles=list(roles),
                      lifetime_s=lifetime_s)


def local_payload_keys() -> str:
    """TASKSAGA_PAYLOAD_KEYS of services started with ``service_env``: the environment's, else
    the local ring."""
    return os.environ.get("TASKSAGA_PAYLOAD_KEYS") or local_secrets()["TASKSAGA_PAYLOAD_KEYS"]


def local_payload_cipher() -> PayloadCipher:
    """The services' payload cipher, for tests and tools that read their messages and tables."""
    from tasksaga.adapters.payload_crypto import KeyRing, PayloadCipher

    return PayloadCipher(KeyRing.parse(local_payload_keys()))


def service_env(stack_env: Mapping[str, str], api_port: int, **overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(stack_env)
    for name, value in local_secrets().items():
        env.setdefault(name, value)
    env.update({
        "TASKSAGA_API_PORT": str(api_port),
        "TASKSAGA_WEBHOOK_SECRET": env.get("TASKSAGA_WEBHOOK_SECRET", "local-demo-secret-0123"),
        "TASKSAGA_CONTRACTS_DIR": str(REPO / "contracts"),
        # Local webhook receivers (tests, demo) bind 127.0.0.2: the rest of the loopback,
        # where the stack and the API listen, stays refused by the SSRF guard.
        "TASKSAGA_URL_ALLOWLIST": env.get("TASKSAGA_URL_ALLOWLIST", "127.0.0.2/32"),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(overrides)
    return env


def drop_database(shared: str, name: str, timeout_s: float = 30.0) -> None:
    """Drop a database (a test's, the bench's) if it exists, ending its sessions. An
    autovacuum worker in it makes FORCE refuse (our role may not signal it:
    InsufficientPrivilege); it leaves within moments, so the drop is tried again meanwhile."""
    import psycopg
    from psycopg import sql

    deadline = time.monotonic() + timeout_s
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(shared, autocommit=True) as admin:
        while True:
            try:
                admin.execute(drop)
                return
            except psycopg.errors.InsufficientPrivilege:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

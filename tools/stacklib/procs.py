"""Process, port and log helpers, and the Service base class of every server."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .common import LOG_TAIL_LINES, STOP_TIMEOUT_S, Settings, StackError

# --------------------------------------------------------------------------------------------
# Small process / network helpers
# --------------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(message, flush=True)


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int, marker: str) -> bool:
    """True if ``pid`` is a live (non-zombie) process whose command line contains ``marker``.

    The marker guards against pid reuse after a reboot or crash (stale pid files).
    """
    with contextlib.suppress(ChildProcessError, OSError):
        # Reap it if it is our own exited child, so it does not linger as a zombie.
        os.waitpid(pid, os.WNOHANG)
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = read_cmdline(proc)
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and marker in cmdline


def read_cmdline(proc: Path) -> str:
    # The kernel reports an empty command line while a process is in the middle of execve
    # (which a server we just spawned may well be); give it a moment before judging.
    for _ in range(20):
        cmdline = (proc / "cmdline").read_bytes()
        if cmdline:
            break
        time.sleep(0.05)
    return cmdline.replace(b"\0", b" ").decode(errors="replace")


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def spawn_detached(argv: Sequence[str], log: Path, cwd: Path, extra_env: Mapping[str, str]) -> int:
    """Start a server in its own session with stdout/stderr appended to ``log``; return its pid.

    ``posix_spawn`` rather than ``subprocess.Popen`` because the child must outlive us and a
    dropped Popen object warns ("subprocess N is still running") in importing test processes.
    """
    with log.open("a") as f:
        f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} tools/stack starting: {argv[0]}\n")
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    environ = {**os.environ, **extra_env}
    # posix_spawn has no cwd parameter, so go through a tiny sh that cds and execs.
    script = 'cd "$1" && shift && exec "$@"'
    sh_argv = ["/bin/sh", "-c", script, "sh", str(cwd), *argv]
    return os.posix_spawn("/bin/sh", sh_argv, environ, file_actions=actions, setsid=True)


def terminate(pid: int, marker: str, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if wait_until(lambda: not pid_alive(pid, marker), wait_s):
            return
        if sig == signal.SIGTERM:
            say(f"  pid {pid} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
    raise StackError(f"could not stop pid {pid}")


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def run(
    argv: Sequence[str],
    *,
    what: str,
    env_extra: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float | None = None,
    capture: bool = True,
) -> str:
    """Run a command to completion; raise StackError naming ``what`` failed, with its output."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=capture,
            text=True,
            cwd=cwd,
            env={**os.environ, **(env_extra or {})},
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StackError(f"{what}: timed out after {timeout:.0f}s") from None
    output = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0:
        raise StackError(f"{what} failed (exit {done.returncode}):\n{output.strip()}")
    return output


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            # Logs can be large; the last 256 KiB hold far more than 100 lines in practice.
            f.seek(max(0, f.tell() - 256 * 1024))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# Services
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Missing:
    command: str
    why: str
    how: str

    def __str__(self) -> str:
        return f"  - {self.command}: {self.why}\n      install: {self.how}"


class Service:
    """A server managed through a pid file; subclasses fill in install/start/readiness."""

    name: str = ""

    def __init__(self, settings: Settings) -> None:
        self.s = settings

    # -- to override ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def marker(self) -> str:
        """A string in the server's command line that identifies *our* instance."""
        raise NotImplementedError

    def missing_prerequisites(self) -> list[Missing]:
        return []

    def installed(self) -> bool:
        return True

    def install(self) -> None:
        pass

    def start(self) -> None:
        raise NotImplementedError

    def check_ready(self) -> bool:
        """One readiness probe; may raise StackError for a definite failure."""
        raise NotImplementedError

    def stop(self, pid: int) -> None:
        terminate(pid, self.marker)

    # -- shared ----------------------------------------------------------------------------------
    @property
    def log(self) -> Path:
        return self.s.log_file(self.name)

    def pid(self) -> int | None:
        """Pid of our running server, or None. Read-only: safe without the stack lock."""
        pid = read_pid(self.s.pid_file(self.name))
        return pid if pid is not None and pid_alive(pid, self.marker) else None

    def forget_stale_pid(self) -> None:
        """Delete the pid file if its process is gone. Only under the stack lock: unlocked, it
        could race with an `up` that is just writing a fresh pid (and orphan that server)."""
        if self.pid() is None:
            self.s.pid_file(self.name).unlink(missing_ok=True)

    def write_pid(self, pid: int) -> None:
        self.s.run_dir.mkdir(parents=True, exist_ok=True)
        # Write-then-rename, so a concurrent reader never sees a half-written pid.
        scratch = self.s.pid_file(self.name).with_suffix(".pid.tmp")
        scratch.write_text(f"{pid}\n")
        scratch.replace(self.s.pid_file(self.name))

    def ensure_ports_free(self) -> None:
        for port in self.ports:
            if port_open(port):
                raise StackError(
                    f"{self.name}: port {port} is already in use by a process that tools/stack "
                    f"did not start; stop it or choose other TASKSAGA_* ports"
                )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.pid() is None:
                raise StackError(
                    f"{self.name} exited during startup; last log lines ({self.log}):\n"
                    f"{tail(self.log, 40)}"
                )
            if self.check_ready():
                return
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{self.name} not ready after {timeout:.0f}s; last log lines ({self.log}):\n"
                    f"{tail(self.log, 40)}"
                )
            time.sleep(0.5)


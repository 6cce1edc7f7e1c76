#!/usr/bin/env python3
"""`make up` / `make down`: the local stack and the four services, kept running in the
background.

    tools/local_system.py up [--port 8000]   start the stack and the services, print the URLs
    tools/local_system.py status             what runs, where
    tools/local_system.py down [--stack]     stop the services (--stack: the stack too)

The services' pid files and logs live under ``.stack/system/`` (``TASKSAGA_STACK_DIR``);
``down`` stops only processes whose pid file it wrote and whose command line is still that
service's. ``make demo KEEP=1`` leaves its services running the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stack_tool
from localrun import SERVICES, ServiceProcesses, service_env

DEFAULT_PORT = 8000
# Every example, so that the CLI has something of each kind to run (the expense approval's
# signals, the order's pivot).
TASK_MODULES = ("tasksaga_examples.zip_archive,tasksaga_examples.video_pipeline,"
                "tasksaga_examples.expense_approval,tasksaga_examples.order_fulfilment")


def state_dir() -> Path:
    return Path(stack_tool.Settings.from_env().stack_dir) / "system"


def _pid_file(name: str) -> Path:
    return state_dir() / f"{name}.pid"


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def running() -> dict[str, int]:
    """The recorded services still running (their pid alive and still that service)."""
    alive: dict[str, int] = {}
    for name in SERVICES:
        path = _pid_file(name)
        if not path.exists():
            continue
        pid = int(path.read_text().strip() or 0)
        if pid and f"tasksaga-{name}" in _command_line(pid):
            alive[name] = pid
    return alive


def recorded() -> dict[str, str]:
    """The API URL and log folder of the services last recorded (empty: none)."""
    info = state_dir() / "system.json"
    if not info.exists():
        return {}
    found: dict[str, str] = json.loads(info.read_text())
    return found


def record(services: ServiceProcesses) -> None:
    """Write the pid files of services left running, for `make down`."""
    state_dir().mkdir(parents=True, exist_ok=True)
    for name, process in services.processes.items():
        _pid_file(name).write_text(f"{process.pid}\n")
    (state_dir() / "system.json").write_text(json.dumps(
        {"api_url": services.api_url, "log_dir": str(services.log_dir),
         "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))


def usage_lines(api_url: str, log_dir: Path | str) -> list[str]:
    """What `make up` and `make demo KEEP=1` print: where things are and how to use them."""
    return [
        f"  API        {api_url}",
        f"  dashboard  {api_url}/ui",
        "  token      export TASKSAGA_TOKEN=$(.venv/bin/tasksaga-token --tenant demo "
        "--subject you --role tasksaga:operator --role approver)",
        f"  CLI        export TASKSAGA_URL={api_url}",
        "             .venv/bin/tasksaga submit CreateZip -f files=README.md -F "
        "archive_name=readme.zip --watch",
        "             .venv/bin/tasksaga list    (docs/cli.md: every command)",
        f"  logs       {log_dir}",
        "  stop       make down   (make down STACK=1 stops Kafka, Postgres and MinIO too)",
    ]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def up(port: int) -> int:
    alive = running()
    if alive:
        if len(alive) < len(SERVICES):
            print(f"some services run, others not ({', '.join(sorted(alive))} run): "
                  "`make down` first, then `make up`", file=sys.stderr)
            return 1
        info = recorded()
        print("tasksaga is already up")
        print("\n".join(usage_lines(info.get("api_url", "?"), info.get("log_dir", "?"))))
        return 0
    if not _port_free(port):
        print(f"port {port} is taken: `make up PORT=<another>`", file=sys.stderr)
        return 1
    print("== local stack (Kafka, Postgres, MinIO)")
    stack_tool.up()
    env = stack_tool.env()
    from tasksaga.adapters.migrations import apply_migrations

    apply_migrations(env["TASKSAGA_DATABASE_URL"])
    print("== starting api, orchestrator, step-worker, notifier in the background")
    services = ServiceProcesses(
        service_env(env, port, TASKSAGA_TASK_MODULES=os.environ.get(
            "TASKSAGA_TASK_MODULES", TASK_MODULES)), state_dir() / "logs", port)
    try:
        services.start_all()
    except (RuntimeError, TimeoutError):
        services.stop_all()
        raise
    record(services)
    print("tasksaga is up")
    print("\n".join(usage_lines(services.api_url, services.log_dir)))
    return 0


def _stop(pids: dict[str, int], timeout_s: float = 20.0) -> None:
    for pid in pids.values():
        # Started in its own session: its process group is its pid.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for name, pid in pids.items():
        while _command_line(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _command_line(pid):
            print(f"{name} (pid {pid}) did not stop within {timeout_s:.0f} s: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        print(f"stopped {name} (pid {pid})")


def down(stack: bool) -> int:
    pids = running()
    if pids:
        _stop(pids)
    else:
        print("no tasksaga services are running (from `make up` or `make demo KEEP=1`)")
    for name in SERVICES:
        _pid_file(name).unlink(missing_ok=True)
    (state_dir() / "system.json").unlink(missing_ok=True)
    if stack:
        stack_tool.down()
    return 0


def status() -> int:
    pids = running()
    for name in SERVICES:
        print(f"{name:<13} {'up   pid ' + str(pids[name]) if name in pids else 'down'}")
    info = recorded()
    if pids and info:
        print("\n".join(usage_lines(info["api_url"], info["log_dir"])))
    return 0 if len(pids) == len(SERVICES) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start the stack and the services")
    start.add_argument("--port", type=int,
                       default=int(os.environ.get("TASKSAGA_UP_API_PORT", DEFAULT_PORT)))
    stop = commands.add_parser("down", help="stop the services")
    stop.add_argument("--stack", action="store_true", help="stop Kafka, Postgres, MinIO too")
    commands.add_parser("status", help="what runs")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args.port)
    if args.command == "down":
        return down(args.stack)
    return status()


if __name__ == "__main__":
    sys.exit(main())

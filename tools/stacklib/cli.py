"""The tools/stack command line."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Mapping, Sequence

from .common import (
    BROKER_CHOICES,
    CLUSTER_SIZE,
    EXIT_NOT_ALL_RUNNING,
    LOG_TAIL_LINES,
    MAX_PG_SHARDS,
    SERVICES,
    Settings,
    StackError,
    env,
)
from .helm import ensure_helm
from .ops import down, logs, reset, status, up
from .procs import say

# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def print_status(result: Mapping[str, Mapping[str, object]]) -> int:
    for name, info in result.items():
        # "starting": our process is alive but its port is not accepting connections yet.
        state = "running" if info["running"] else "stopped" if info["pid"] is None else "starting"
        pid = info["pid"] if info["pid"] is not None else "-"
        say(f"{name:<9} {state:<8} pid {pid!s:<7} port {info['port']}")
    return 0 if all(info["running"] for info in result.values()) else EXIT_NOT_ALL_RUNNING


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/stack", description="Local Kafka + PostgreSQL + MinIO under .stack/."
    )
    brokers = argparse.ArgumentParser(add_help=False)
    brokers.add_argument(
        "--brokers", type=int, choices=BROKER_CHOICES, default=None,
        help=f"{CLUSTER_SIZE}: Kafka as a {CLUSTER_SIZE}-node KRaft cluster (kafka-1..3, ports "
             "from TASKSAGA_KAFKA_CLUSTER_PORT, default 19192) for broker tests; down and reset "
             "then act on its nodes only (default: TASKSAGA_STACK_BROKERS, else 1)")
    brokers.add_argument(
        "--pg-shards", type=int, choices=range(1, MAX_PG_SHARDS + 1), default=None,
        metavar="N",
        help="PostgreSQL clusters for the event store's shards: shard 2 on the PostgreSQL "
             "port + 1 (15433), ...; env then prints TASKSAGA_SHARDS (default: "
             "TASKSAGA_STACK_PG_SHARDS, else 1; docs/scaling.md)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", parents=[brokers],
                        help="install on first use, start, wait until ready")
    commands.add_parser("down", parents=[brokers], help="stop all servers")
    commands.add_parser("status", parents=[brokers],
                        help="one line per server; exit 0 if all running, else 3")
    commands.add_parser("reset", parents=[brokers],
                        help="down + delete data (keeps installed binaries)")
    commands.add_parser("env", parents=[brokers], help="print export lines for the application")
    commands.add_parser("helm", parents=[brokers],
                        help="build the pinned helm once (go install) and print its path")
    logs_parser = commands.add_parser("logs", parents=[brokers],
                                      help=f"last {LOG_TAIL_LINES} lines of server logs")
    nodes = tuple(f"kafka-{node}" for node in range(1, CLUSTER_SIZE + 1))
    shards = tuple(f"postgres-{shard}" for shard in range(2, MAX_PG_SHARDS + 1))
    logs_parser.add_argument("service", nargs="?", choices=(*SERVICES, *nodes, *shards))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = Settings.from_env().with_brokers(args.brokers).with_pg_shards(
            args.pg_shards)
        if args.command == "up":
            started = time.monotonic()
            up(settings)
            say(f"stack up in {time.monotonic() - started:.1f}s")
        elif args.command == "down":
            down(settings)
        elif args.command == "status":
            return print_status(status(settings))
        elif args.command == "reset":
            reset(settings)
        elif args.command == "env":
            for key, value in env(settings).items():
                say(f"export {key}={shlex.quote(value)}")
        elif args.command == "helm":
            say(str(ensure_helm(settings)))
        elif args.command == "logs":
            say(logs(args.service, settings))
    except StackError as error:
        print(f"tools/stack {args.command}: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    return 0

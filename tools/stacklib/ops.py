"""Stack operations: up, down, reset, status, logs, under one lock."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence

from .common import (
    MissingPrerequisite,
    Settings,
    StackError,
    ready_timeout_s,
)
from .kafka import Kafka
from .kafka_cluster import KafkaNode
from .minio import Minio
from .postgres import Postgres, PostgresShard
from .procs import Service, port_open, say, tail
from .system import install_test_browser, install_worker_programs

# --------------------------------------------------------------------------------------------
# Stack operations
# --------------------------------------------------------------------------------------------


def kafka_servers(settings: Settings) -> list[Service]:
    """The single broker, or the cluster's nodes with ``brokers=3``."""
    if settings.brokers == 1:
        return [Kafka(settings)]
    return [KafkaNode(settings, node) for node in range(1, settings.brokers + 1)]


def postgres_servers(settings: Settings) -> list[Service]:
    """The stack's PostgreSQL, and with ``pg_shards`` > 1 the shards' further clusters."""
    return [Postgres(settings), *(PostgresShard(settings, shard)
                                  for shard in range(2, settings.pg_shards + 1))]


def services(settings: Settings) -> list[Service]:
    return [*kafka_servers(settings), *postgres_servers(settings), Minio(settings)]


def managed_by_down(settings: Settings) -> list[Service]:
    """What ``down`` and ``reset`` act on: the whole single-broker stack, or with
    ``brokers=3`` the cluster's nodes only (PostgreSQL and MinIO are shared with it)."""
    return services(settings) if settings.brokers == 1 else kafka_servers(settings)


@contextlib.contextmanager
def stack_lock(settings: Settings) -> Iterator[None]:
    """Serialize up/down/reset so two concurrent invocations cannot double-start a server."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with (settings.run_dir / "stack.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("waiting for another tools/stack up/down/reset to finish…")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def check_prerequisites(all_services: Sequence[Service]) -> None:
    missing = [m for service in all_services for m in service.missing_prerequisites()]
    if missing:
        lines = "\n".join(str(m) for m in missing)
        raise MissingPrerequisite(f"missing prerequisite(s) for tools/stack:\n{lines}")


def up(settings: Settings | None = None,
       brokers: int | None = None) -> dict[str, dict[str, object]]:
    """Install what is missing, start what is stopped, and wait until every server is ready
    (``brokers=3``: Kafka as the three-node cluster)."""
    s = (settings or Settings.from_env()).with_brokers(brokers)
    stack = services(s)
    check_prerequisites(stack)
    for path in (s.stack_dir, s.logs_dir, s.run_dir):
        path.mkdir(parents=True, exist_ok=True)
    with stack_lock(s):
        install_worker_programs()
        install_test_browser()
        for service in stack:
            if not service.installed():
                service.install()
        for service in stack:
            service.forget_stale_pid()
        stopped = [service for service in stack if service.pid() is None]
        # Check every port before starting anything, so a conflict leaves nothing half-started.
        for service in stopped:
            service.ensure_ports_free()
        for service in stopped:
            say(f"starting {service.name}…")
            service.start()
        wait_all_ready(stack)
        # Still under the lock, so a concurrent `down` cannot make this report stale.
        result = status(s)
    for service in stack:
        how = "started" if service in stopped else "already running"
        say(
            f"{service.name:<9} up   pid {result[service.name]['pid']!s:<7} "
            f"127.0.0.1:{service.port:<6} ({how})"
        )
    return result


def wait_all_ready(stack: Sequence[Service]) -> None:
    """Probe all servers in parallel: total wait is the slowest one (Kafka), not the sum."""
    errors: dict[str, str] = {}

    def wait(service: Service) -> None:
        try:
            service.wait_ready(ready_timeout_s(service.name))
        except StackError as error:
            errors[service.name] = str(error)

    threads = [threading.Thread(target=wait, args=(service,)) for service in stack]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise StackError("\n\n".join(errors[s.name] for s in stack if s.name in errors))


def down(settings: Settings | None = None, brokers: int | None = None) -> None:
    """Stop every running server: SIGTERM (pg_ctl fast for PostgreSQL), wait, then SIGKILL.
    ``brokers=3``: the cluster's nodes only."""
    s = (settings or Settings.from_env()).with_brokers(brokers)
    s.run_dir.mkdir(parents=True, exist_ok=True)
    with stack_lock(s):
        if s.brokers > 1:
            # All nodes at once: stopped one by one, the last ones wait for a controller
            # quorum that is already gone (their controlled shutdown hangs until SIGKILL).
            parallel(stop_one, kafka_servers(s))
            return
        for service in reversed(managed_by_down(s)):
            stop_one(service)


def stop_one(service: Service) -> None:
    pid = service.pid()
    if pid is None:
        service.forget_stale_pid()
        say(f"{service.name:<9} already stopped")
        return
    say(f"stopping {service.name} (pid {pid})…")
    service.stop(pid)
    service.s.pid_file(service.name).unlink(missing_ok=True)
    say(f"{service.name:<9} stopped")


def parallel(action: Callable[[Service], None], stack: Sequence[Service]) -> None:
    """Run ``action`` on every server at once; raise the first StackError afterwards."""
    errors: list[StackError] = []

    def one(service: Service) -> None:
        try:
            action(service)
        except StackError as error:
            errors.append(error)

    threads = [threading.Thread(target=one, args=(service,)) for service in stack]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def reset(settings: Settings | None = None, brokers: int | None = None) -> None:
    """down, then delete all data and logs; installed jars and binaries are kept.
    ``brokers=3``: the cluster's nodes, their data and logs only."""
    s = (settings or Settings.from_env()).with_brokers(brokers)
    down(s)
    if s.brokers > 1:
        nodes = [KafkaNode(s, node) for node in range(1, s.brokers + 1)]
        for node in nodes:
            shutil.rmtree(node.home, ignore_errors=True)
            node.log.unlink(missing_ok=True)
        say(f"deleted the cluster's data under {nodes[0].home.parent}")
        return
    kafka = Kafka(s)
    doomed = [
        kafka.data,
        kafka.config,
        kafka.probe_config,
        *(server.home for server in postgres_servers(s) if isinstance(server, Postgres)),
        Minio(s).data.parent,
        s.logs_dir,
        s.run_dir,
    ]
    for path in doomed:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    say(f"deleted stack data under {s.stack_dir} (kept {s.bin_dir} and {kafka.lib})")


def status(settings: Settings | None = None,
           brokers: int | None = None) -> dict[str, dict[str, object]]:
    """Per server: running (our process alive and its port accepting connections), pid, port."""
    s = (settings or Settings.from_env()).with_brokers(brokers)
    result: dict[str, dict[str, object]] = {}
    for service in services(s):
        pid = service.pid()
        running = pid is not None and port_open(service.port)
        result[service.name] = {"running": running, "pid": pid, "port": service.port}
    return result


def logs(name: str | None = None, settings: Settings | None = None,
         brokers: int | None = None) -> str:
    s = (settings or Settings.from_env()).with_brokers(brokers)
    parts = []
    for service in [name] if name else [service.name for service in services(s)]:
        path = s.log_file(service)
        parts.append(f"==> {path} <==\n{tail(path) if path.exists() else '(no log yet)'}")
    return "\n\n".join(parts)


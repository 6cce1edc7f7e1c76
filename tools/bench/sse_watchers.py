"""SSE watchers on one API process: memory per watcher and event delivery latency.

``make bench-sse`` (or ``python tools/bench/sse_watchers.py --watchers 1000 --tasks 100``)
starts the four services against the running stack (its own topic prefix and database,
``tasksaga_bench_sse``, created anew), submits
``--tasks`` Pulse tasks (bench/sse_tasks.py) whose first step waits for a gate file, opens
``--watchers`` SSE streams spread over them, and measures:

- memory per watcher: the API process's RSS with every watcher connected and idle, minus
  its RSS before (after one warm-up stream), divided by the number of watchers;
- event delivery: for each event a watcher receives that happened after it connected
  (``occurred_at_ms`` written by the orchestrator, on the database's clock), receipt time
  minus occurrence; likewise for progress messages (``reported_at_ms``, the worker's clock).
  Both clocks are this machine's. The figures include the client's own time: one asyncio
  process reads every stream, on the same cores as the services;
- the fan-out's own share: receipt minus the Kafka timestamp of the event's record (when the
  orchestrator's outbox relay produced it), read by a consumer of the benchmark's own. The
  rest is the orchestrator's path from decision to Kafka (commit, outbox, relay).

Then the gate opens, the tasks start one after the other over ``--spread-s`` (a steady flow;
0 starts them all at once, a burst), every task runs to its end, and each stream must end
with its terminal event; the run fails if any watcher missed one or got a version twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parents[1]
# This tree's code and contracts, like the services it starts (not an installed copy).
sys.path[:0] = [str(TOOLS), str(TOOLS.parent / "services")]

import httpx  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402

import stack_tool  # noqa: E402
from bench.ours import recreate_database  # noqa: E402
from localrun import (  # noqa: E402
    REPO,
    ServiceProcesses,
    local_payload_cipher,
    local_token,
    service_env,
)
from tasksaga.adapters.avro_codec import AvroCodec, DecodeError  # noqa: E402
from tasksaga.adapters.wire import Topics  # noqa: E402

BENCH_DB = "tasksaga_bench_sse"


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (0 < share <= 1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process used so far."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class WatcherLog:
    task_id: str
    connected_ms: float = 0.0
    versions: list[int] = field(default_factory=list)
    received_ms: dict[int, float] = field(default_factory=dict)  # live events by version
    event_latency_ms: list[float] = field(default_factory=list)
    progress_latency_ms: list[float] = field(default_factory=list)
    ended: bool = False
    error: str | None = None


async def sse_lines(host: str, port: int, path: str, token: str
                    ) -> tuple[int, AsyncIterator[str], asyncio.StreamWriter]:
    """A bare HTTP/1.1 GET of an SSE stream: its status and its lines. An HTTP client
    library's per-connection overhead (its pool scans every connection per request) would
    be measured along with the API at 1,000 connections; this reads chunks and nothing more."""
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream"
                 f"\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    status = int((await reader.readline()).split()[1])
    headers = b""
    while (line := await reader.readline()) not in (b"\r\n", b""):
        headers += line.lower()
    chunked = b"transfer-encoding: chunked" in headers

    async def lines() -> AsyncIterator[str]:
        pending = b""
        while True:
            if chunked:
                size = int((await reader.readline()).strip() or b"0", 16)
                if size == 0:
                    return
                data = (await reader.readexactly(size + 2))[:-2]
            else:
                data = await reader.read(1 << 16)
                if not data:
                    return
            *complete, pending = (pending + data).split(b"\n")
            for raw in complete:
                yield raw.decode()

    return status, lines(), writer


async def watch(host: str, port: int, token: str, log: WatcherLog,
                connected: asyncio.Semaphore, done_connecting: list[int]) -> None:
    """Follow one stream to its end, timing each message that happened after connecting."""
    writer: asyncio.StreamWriter | None = None
    try:
        status, lines, writer = await sse_lines(host, port, f"/tasks/{log.task_id}/events",
                                                token)
        if status != 200:
            log.error = f"HTTP {status}"
            return
        log.connected_ms = time.time() * 1000
        done_connecting.append(1)
        connected.release()
        async for line in lines:
            if not line.startswith("data: "):
                continue
            now_ms = time.time() * 1000
            message: dict[str, Any] = json.loads(line[6:])
            kind = message["type"]
            if kind == "event":
                log.versions.append(message["version"])
                if message["occurred_at_ms"] > log.connected_ms:
                    log.event_latency_ms.append(now_ms - message["occurred_at_ms"])
                    log.received_ms[message["version"]] = now_ms
            elif kind == "progress":
                if message["reported_at_ms"] > log.connected_ms:
                    log.progress_latency_ms.append(now_ms - message["reported_at_ms"])
            elif kind == "end":
                log.ended = True
                return
            else:
                log.error = f"unexpected message {message}"
                return
    except (OSError, ValueError, asyncio.IncompleteReadError) as error:
        log.error = f"{type(error).__name__}: {error}"
    finally:
        if not log.connected_ms:
            connected.release()
        if writer is not None:
            writer.close()


class RecordTimes:
    """Kafka timestamps of the task-events records, by (task id, version)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.times: dict[tuple[str, int], int] = {}
        self.own_delay_ms: list[float] = []  # this consumer's receipt minus the timestamp
        self._codec = AvroCodec(cipher=local_payload_cipher())
        self._stop = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "enable.auto.commit": False,
                                   "group.id": f"sse-bench-{uuid.uuid4().hex}"})
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [TopicPartition(topic, p, self._consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=10)[1]) for p in partitions]
        self._consumer.assign(ends)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            record = self._consumer.poll(0.2)
            if record is None or record.error() is not None:
                continue
            received_ms = time.time() * 1000
            try:
                envelope = self._codec.decode(record.value())
            except DecodeError as error:
                print(f"bench consumer skipped a record: {error}", file=sys.stderr)
                continue
            self.times[(envelope.task_id, envelope.version)] = record.timestamp()[1]
            self.own_delay_ms.append(received_ms - record.timestamp()[1])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def start_system(stack_env: dict[str, str], tasks: int, port: int, log_dir: Path
                 ) -> ServiceProcesses:
    prefix = f"ssebench{uuid.uuid4().hex[:8]}"
    code_path = ":".join(str(p) for p in (REPO / "tools", REPO / "services",
                                          REPO / "examples", REPO))
    env = service_env(
        stack_env, port,
        TASKSAGA_DATABASE_URL=recreate_database(stack_env["TASKSAGA_DATABASE_URL"], BENCH_DB),
        TASKSAGA_TOPIC_PREFIX=prefix,
        TASKSAGA_ORCHESTRATOR_INSTANCE_ID=f"{prefix}-orchestrator-0",
        TASKSAGA_TASK_MODULES="bench.sse_tasks",
        # Every task's first step waits at the gate at once.
        TASKSAGA_WORKER_CONCURRENCY=str(tasks + 4),
        TASKSAGA_API_RATE_LIMIT_REQUESTS="0",  # 1,000 streams of one tenant in a second
        TASKSAGA_LOG_LEVEL="WARNING",
        PYTHONPATH=code_path,
    )
    services = ServiceProcesses(env, log_dir / prefix, port)
    services.start_all()
    return services


async def run(args: argparse.Namespace) -> dict[str, Any]:
    stack_env = stack_tool.env()
    gate_dir = Path(tempfile.mkdtemp(prefix="sse-bench-"))
    gate = gate_dir / "open"
    services = start_system(stack_env, args.tasks, args.port, REPO / ".run" / "bench-sse")
    try:
        token = local_token(tenant="bench", subject="sse-bench", lifetime_s=3600,
                            secret=services.env["TASKSAGA_AUTH_HS256_SECRET"])
        api_pid = services.processes["api"].pid
        limits = httpx.Limits(max_connections=args.watchers + 20, max_keepalive_connections=20)
        async with httpx.AsyncClient(base_url=services.api_url, limits=limits,
                                     headers={"Authorization": f"Bearer {token}"},
                                     timeout=httpx.Timeout(60.0, read=None)) as client:
            task_ids = []
            for index in range(args.tasks):
                reply = await client.post("/tasks/Pulse?listen=sse", json={
                    "gate": str(gate), "beats": args.beats, "interval_s": args.interval_s,
                    "delay_s": index * args.spread_s / args.tasks},
                    headers={"Idempotency-Key": f"{uuid.uuid4()}-{index}"})
                reply.raise_for_status()
                task_ids.append(reply.json()["task_id"])
            # Warm-up: one stream, so the code paths and pools are in memory before measuring.
            async with client.stream("GET", f"/tasks/{task_ids[0]}/events") as reply:
                async for _line in reply.aiter_lines():
                    break
            await asyncio.sleep(2.0)
            rss_before = rss_kib(api_pid)
            logs = [WatcherLog(task_ids[i % args.tasks]) for i in range(args.watchers)]
            connecting = asyncio.Semaphore(args.connect_concurrency)
            connected: list[int] = []
            started = time.monotonic()
            watchers = []
            for log in logs:
                await connecting.acquire()  # released once its stream answered
                watchers.append(asyncio.create_task(
                    watch("127.0.0.1", args.port, token, log, connecting, connected)))
            while len(connected) + sum(1 for w in logs if w.error) < args.watchers:
                await asyncio.sleep(0.05)
            connect_s = time.monotonic() - started
            await asyncio.sleep(2.0)  # idle, every watcher connected
            rss_connected = rss_kib(api_pid)
            records = RecordTimes(stack_env["TASKSAGA_KAFKA_BOOTSTRAP"],
                                  Topics(services.env["TASKSAGA_TOPIC_PREFIX"]).task_events)
            try:
                cpu_before, client_before = cpu_s(api_pid), time.process_time()
                gate.touch()
                opened = time.monotonic()
                await asyncio.wait_for(asyncio.gather(*watchers), args.timeout_s)
                run_s = time.monotonic() - opened
                api_cpu = cpu_s(api_pid) - cpu_before
                client_cpu = time.process_time() - client_before
                rss_end = rss_kib(api_pid)
                await asyncio.sleep(0.5)
            finally:
                records.close()
    finally:
        services.stop_all()
        gate.unlink(missing_ok=True)
        gate_dir.rmdir()
    result = report(args, logs, rss_before, rss_connected, rss_end, connect_s, run_s)
    hops = [received - records.times[(log.task_id, version)] for log in logs
            for version, received in log.received_ms.items()
            if (log.task_id, version) in records.times]
    result["kafka_to_client_ms"] = figures(hops)
    # The same records read by a plain consumer in this process: Kafka's own share.
    result["kafka_to_plain_consumer_ms"] = figures(records.own_delay_ms)
    result["api_cpu_s_while_running"] = round(api_cpu, 2)
    result["client_cpu_s_while_running"] = round(client_cpu, 2)
    result["load_average_1m"] = round(os.getloadavg()[0], 1)  # shared machine: context
    return result


def figures(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {name: round(percentile(values, share), 1) for name, share in
            (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))}


def report(args: argparse.Namespace, logs: list[WatcherLog], rss_before: int,
           rss_connected: int, rss_end: int, connect_s: float, run_s: float) -> dict[str, Any]:
    failed = [log for log in logs if log.error or not log.ended]
    broken = [log for log in logs if log.versions != list(range(1, len(log.versions) + 1))]
    events = [ms for log in logs for ms in log.event_latency_ms]
    progress = [ms for log in logs for ms in log.progress_latency_ms]

    return {
        "watchers": args.watchers, "tasks": args.tasks, "spread_s": args.spread_s,
        "connect_s": round(connect_s, 2), "run_s": round(run_s, 2),
        "rss_before_kib": rss_before, "rss_connected_kib": rss_connected,
        "rss_end_kib": rss_end,
        "memory_per_watcher_kib": round((rss_connected - rss_before) / args.watchers, 1),
        "live_events_delivered": len(events), "event_delivery_ms": figures(events),
        "progress_delivered": len(progress), "progress_delivery_ms": figures(progress),
        "watchers_failed": len(failed), "watchers_with_gaps_or_duplicates": len(broken),
        "first_failure": next((log.error for log in failed if log.error), None),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--beats", type=int, default=5, help="progress reports per task")
    parser.add_argument("--interval-s", type=float, default=0.2)
    parser.add_argument("--spread-s", type=float, default=10.0,
                        help="the tasks start over this long once the gate opens (0: at once)")
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--port", type=int, default=18595)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    ok = not result["watchers_failed"] and not result["watchers_with_gaps_or_duplicates"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""tasksaga under load: the four services as processes, the generator as a Kafka client.

The generator produces ``SubmitTask`` envelopes to the task-commands topic with the services'
own producer settings and codec — exactly what the API does after its HTTP layer — and sees
completion by consuming the task-events topic for terminal events. Each run has its own topic
prefix; the services write to their own database (``tasksaga_bench``) on the shared Postgres.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, Producer

from bench import checks, procstat
from bench.loadgen import TaskRecord, Tracker
from bench.workloads import Workload, dispatch_latencies, payload
from localrun import REPO, ServiceProcesses, drop_database, local_payload_cipher, service_env
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import producer_config
from tasksaga.adapters.migrations import apply_migrations
from tasksaga.adapters.topics import all_topic_names, ensure_topics
from tasksaga.adapters.wire import EVENT_TYPE_HEADER, Envelope, Topics
from tasksaga.core import events as ev
from tasksaga.core import messages as msg

BENCH_DB = "tasksaga_bench"
TOPIC_PARTITIONS = 6
TERMINAL = (ev.TaskCompleted, ev.TaskFailed, ev.TaskCancelled, ev.TaskCompensationFailed,
            ev.TaskNeedsAttention)


def database_url(base_url: str, name: str) -> str:
    return base_url.rsplit("/", 1)[0] + "/" + name


def recreate_database(base_url: str, name: str) -> str:
    """Drop and create ``name`` on the server of ``base_url`` (the bench's own database)."""
    drop_database(base_url, name)
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(base_url, name)


def create_durable_topics(bootstrap: str, names: list[str]) -> None:
    """Topics that fsync every message (flush.messages=1), like Redis's appendfsync always.

    Kafka's default leaves fsync to the OS and relies on replication; this stack has a single
    broker, so without it an acknowledged record could be lost in a power cut.
    """
    ensure_topics(bootstrap, names, TOPIC_PARTITIONS,
                  config={"flush.messages": "1", "min.insync.replicas": "1"})

TERMINAL_NAMES = frozenset(t.__name__.encode() for t in TERMINAL)


def _may_be_terminal(headers: Any) -> bool:
    """Whether a task-events record may end its task: its type header says so, or it has none
    (then decode it). The generator's own CPU counts in the machine's, so it decodes only
    the records it acts on, as the notifier does."""
    for key, value in headers or ():  # confluent-kafka: a list of (str, bytes) pairs
        if key == EVENT_TYPE_HEADER:
            return value in TERMINAL_NAMES
    return True


class OursSystem:
    """The services of one run, plus the generator's producer and terminal-event consumer."""

    name = "tasksaga"

    def __init__(
        self,
        stack_env: dict[str, str],
        db_url: str,
        log_dir: Path,
        workload: Workload,
        tracker: Tracker,
        orchestrators: int = 1,
        worker_concurrency: int = 6,
        api_port: int = 18590,
        stack_pids: dict[str, int] | None = None,
        extra_env: dict[str, str] | None = None,
        event_store_urls: list[str] | None = None,
        separate_projector: bool = True,
        workers: int = 1,
        request_fields: Callable[[TaskRecord], dict[str, Any]] | None = None,
    ) -> None:
        self.workload = workload
        self.tracker = tracker
        self.db_url = db_url
        # Where the check reads the tasks' events: every shard's database (TASKSAGA_SHARDS).
        self.event_store_urls = event_store_urls or [db_url]
        self.prefix = f"bench{uuid.uuid4().hex[:8]}"
        self.topics = Topics(self.prefix)
        self.bootstrap = stack_env["TASKSAGA_KAFKA_BOOTSTRAP"]
        self.codec = AvroCodec(cipher=local_payload_cipher())  # the services encrypt payloads
        self.orchestrators = orchestrators
        self.workers = workers  # worker processes in the one worker group of queue "bench"
        # Request fields a shape adds to the common ones (bench/extra_tasks.py's requests).
        self.request_fields = request_fields
        self.stack_pids = stack_pids or {}
        env = service_env(stack_env, api_port, **{
            "TASKSAGA_DATABASE_URL": db_url,
            "TASKSAGA_TOPIC_PREFIX": self.prefix,
            "TASKSAGA_TOPIC_PARTITIONS": str(TOPIC_PARTITIONS),
            "TASKSAGA_TASK_MODULES": "bench.bench_tasks",
            "TASKSAGA_WORKER_CONCURRENCY": str(worker_concurrency),
            "TASKSAGA_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join([str(REPO / "tools"), str(REPO)]),
            # The projections in a process of their own (tasksaga-projector), as deployed
            # under load: the orchestrator's hot path does not share its interpreter.
            "TASKSAGA_ORCHESTRATOR_RUN_PROJECTOR": str(not separate_projector).lower(),
            **(extra_env or {}),  # may replace any of the above (TASKSAGA_TASK_MODULES)
        })
        self.services = ServiceProcesses(env, log_dir / self.prefix, api_port)
        self.separate_projector = separate_projector
        self.outcomes: dict[str, str] = {}
        self.responses: dict[str, str] = {}  # task id -> TaskCompleted.response_json
        self.partitions: dict[str, int] = {}  # task id -> partition, from delivery reports
        self.events_seen = 0
        self._stop = threading.Event()
        self._consumer_ready = threading.Event()
        self._producer: Producer | None = None
        self._consumer_thread: threading.Thread | None = None
        self._delivery_errors: list[str] = []

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        apply_migrations(self.db_url)
        create_durable_topics(self.bootstrap, all_topic_names(self.topics, ["bench"]))
        for index in range(self.orchestrators):
            self.start_orchestrator(index)
        for index in range(self.workers):
            self.services.start("worker" if index == 0 else f"worker#{index}")
        for name in ("notifier", "api", *(("projector",) if self.separate_projector else ())):
            self.services.start(name)
        self.services.wait_until_ready()
        self._producer = Producer(producer_config(self.bootstrap, f"{self.prefix}-generator"))
        self._consumer_thread = threading.Thread(target=self._consume, name="task-events",
                                                 daemon=True)
        self._consumer_thread.start()
        if not self._consumer_ready.wait(30):
            raise RuntimeError("the generator's task-events consumer got no partitions")

    def orchestrator_name(self, index: int) -> str:
        return "orchestrator" if index == 0 else f"orchestrator#{index}"

    def start_orchestrator(self, index: int) -> None:
        self.services.start(self.orchestrator_name(index), {
            "TASKSAGA_ORCHESTRATOR_INSTANCE_ID": f"{self.prefix}-orchestrator-{index}",
        })

    def stop(self) -> None:
        self._stop.set()
        if self._consumer_thread is not None:
            self._consumer_thread.join(timeout=10)
        if self._producer is not None:
            self._producer.flush(10)
        self.services.stop_all()

    # -- the generator ----------------------------------------------------------------------------

    def new_task(self, run: str, index: int, intended: float) -> TaskRecord:
        return TaskRecord(f"{run}-{index:06d}", intended, self.workload.fails(index))

    def submit(self, record: TaskRecord) -> None:
        assert self._producer is not None
        fields = self.request_fields(record) if self.request_fields else {}
        request = json.dumps({"payload": payload(hash(record.task_id)),
                              "fail_last": record.fail, **fields})
        now = int(time.time() * 1000)
        command = msg.SubmitTask(
            task_id=record.task_id, task_type=self.workload.task_type, request_json=request,
            callback_url=None, idempotency_key=None, submitted_at_ms=now, api_steps=[],
        )
        envelope = Envelope(payload=command, message_id=f"submit:{record.task_id}",
                            task_id=record.task_id, correlation_id=record.task_id,
                            causation_id=None, occurred_at_ms=now)
        value = self.codec.encode(envelope)
        while True:
            try:
                self._producer.produce(self.topics.task_commands, value=value,
                                       key=record.task_id.encode(), on_delivery=self._delivered)
                break
            except BufferError:
                self._producer.poll(0.01)
        self._producer.poll(0)

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self._delivery_errors.append(str(error))
            return
        self.partitions[message.key().decode()] = message.partition()

    def cpu_groups(self) -> list[procstat.ProcessGroup]:
        groups = [procstat.ProcessGroup(name, pid) for name, pid in self.stack_pids.items()]
        for name, process in self.services.processes.items():
            groups.append(procstat.ProcessGroup(name, process.pid))
        groups.append(procstat.ProcessGroup("generator", os.getpid(), children=False))
        return groups

    def _consume(self) -> None:
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": f"{self.prefix}-bench-generator",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            # The broker answers a fetch as soon as a record arrives (fetch.min.bytes 1); a
            # 5 ms wait (as before) only made it answer 200 empty fetches a second, charged
            # to Kafka's CPU.
        })

        def assigned(_consumer: Any, partitions: list[Any]) -> None:
            self._consumer_ready.set()

        consumer.subscribe([self.topics.task_events], on_assign=assigned)
        try:
            while not self._stop.is_set():
                # consume() waits its whole timeout unless the batch fills: poll for the
                # first record (it returns on arrival), then take what else is queued.
                first = consumer.poll(0.05)
                if first is None:
                    continue
                batch = [first, *consumer.consume(num_messages=999, timeout=0)]
                received = time.time()
                for message in batch:
                    if message.error() is not None:
                        continue
                    self.events_seen += 1
                    value = message.value()
                    if value is not None and _may_be_terminal(message.headers()):
                        self._on_event(value, received)
        finally:
            consumer.close()

    def _on_event(self, value: bytes, received: float) -> None:
        event = self.codec.decode(value)
        payload_ = event.payload
        if not isinstance(payload_, TERMINAL):
            return
        outcome = type(payload_).__name__
        dispatch: list[float] = []
        if isinstance(payload_, ev.TaskCompleted):
            self.responses[event.task_id] = payload_.response_json
            times = json.loads(payload_.response_json)["steps"]
            dispatch = dispatch_latencies(self.workload.stages, times)
        self.outcomes[event.task_id] = outcome
        self.tracker.complete(event.task_id, received, outcome, dispatch)

    # -- after the run ----------------------------------------------------------------------------

    def wait_all(self, records: list[TaskRecord], timeout_s: float) -> bool:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if all(r.completed is not None for r in records):
                return True
            time.sleep(0.1)
        return False

    def check(self, records: list[TaskRecord], progress: Callable[[str], None]) -> list[str]:
        """The log of every task: sound, complete, and ended the way its request asked."""
        problems: list[str] = []
        if self._delivery_errors:
            problems.append(f"generator delivery errors: {self._delivery_errors[:3]}")
        expected_terminal = {r.task_id: ("TaskFailed" if r.fail else "TaskCompleted")
                             for r in records}
        problems += checks.outcome_problems(self.outcomes, expected_terminal)
        by_id = {r.task_id: r for r in records}
        ids = list(by_id)
        seen: set[str] = set()
        for url in self.event_store_urls:
            with psycopg.connect(url) as conn:
                for chunk_start in range(0, len(ids), 2000):
                    chunk = ids[chunk_start:chunk_start + 2000]
                    rows = conn.execute(
                        "SELECT stream_id, version, payload FROM events"
                        " WHERE stream_id = ANY(%s) ORDER BY stream_id, version",
                        (chunk,)).fetchall()
                    streams: dict[str, list[tuple[int, Any]]] = {}
                    for stream_id, version, raw in rows:
                        streams.setdefault(stream_id, []).append(
                            (version, self.codec.decode(bytes(raw)).payload))
                    for task_id, stream in streams.items():
                        if task_id in seen:
                            problems.append(f"{task_id}: events on more than one shard")
                        seen.add(task_id)
                        fail = by_id[task_id].fail
                        problems += checks.stream_problems(
                            task_id, [v for v, _ in stream], [e for _, e in stream],
                            self.workload.expected_events(fail), expected_terminal[task_id])
        missing = [t for t in ids if t not in seen]
        if missing:
            problems.append(f"{len(missing)} tasks have no events, e.g. {missing[:3]}")
        progress(f"    check: {len(ids)} tasks, {len(problems)} problems")
        return problems


def sweep_and_check(system: OursSystem, plan: Any, log: Callable[[str], None],
                    on_started: Callable[[], None] | None = None) -> dict[str, Any]:
    """Start the system, sweep its workload's rates, wait for every task and check the log;
    the sweep's figures with the check's (the system is stopped whatever happens).
    ``on_started`` runs once the services are up, before the sweep."""
    from bench.sweep import sweep

    system.start()
    try:
        if on_started is not None:
            on_started()
        result = sweep(system, system.workload, system.tracker, plan, log)
        records = result.pop("records")
        assert isinstance(records, list)
        system.wait_all(records, 60)
        problems = system.check(records, log)
        if system.tracker.duplicates:
            log(f"    ({system.tracker.duplicates} terminal events seen twice on Kafka: "
                "at-least-once delivery; the log holds each once)")
        result.update({"check_problems": problems[:20], "check_problem_count": len(problems),
                       "tasks_checked": len(records), "events_seen": system.events_seen})
        return result
    finally:
        system.stop()

"""A probe task for the worker tests, and a harness that runs a real step worker on Kafka.

The probe's one step does what its request says (succeed, sleep, raise odd exceptions, return a
result that cannot be encoded or is too large) and counts its executions: in this process
(``EXECUTIONS``) and, when the request names a ledger file, in that file, so a worker running
in another process (killed with SIGKILL) can be counted too. The test acts as the orchestrator:
it produces ExecuteStep commands and reads the results.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer
from pydantic import BaseModel, ConfigDict

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import ConsumerSettings, KafkaProducer
from tasksaga.adapters.kafka_parallel import ParallelConsumerLoop
from tasksaga.adapters.topics import ensure_topics
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.core import StepContext, TaskDefinition
from tasksaga.core import messages as msg
from tasksaga.core.errors import StepCancelled
from tasksaga.core.registry import TaskRegistry
from tasksaga.worker.cancellation import CancellationBook
from tasksaga.worker.runner import StepRunner

QUEUE = "probe"


class ProbeRequest(BaseModel):
    mode: str = "ok"  # ok | sleep | system_exit | base_exception | unencodable | huge
    sleep_s: float = 0.0
    size: int = 0
    ledger: str = ""  # a file each finished execution appends "task:step:attempt" to


class ProbeData(BaseModel):
    value: str


class Unencodable(ProbeData):
    """The right data type, holding something JSON cannot carry."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    blob: Any


class OddBaseException(BaseException):
    """Not an Exception: what a careless library (or a gevent-style kill) may raise."""


EXECUTIONS: list[tuple[str, int]] = []  # (task id, attempt), in this process
_executions_lock = threading.Lock()

probe = TaskDefinition("WorkerProbe", queue=QUEUE, request=ProbeRequest)


@probe.step("Echo", order=1, data=ProbeData)
def echo(ctx: StepContext[ProbeRequest]) -> BaseModel:
    with _executions_lock:
        EXECUTIONS.append((ctx.task_id, ctx.attempt))
    request = ctx.request
    if request.mode == "sleep":
        if ctx.cancelled is not None and ctx.cancelled.wait(request.sleep_s):
            raise StepCancelled("stopped: the step was cancelled")
    elif request.sleep_s:
        time.sleep(request.sleep_s)
    if request.mode == "system_exit":
        raise SystemExit("a handler called sys.exit")
    if request.mode == "base_exception":
        raise OddBaseException("not an Exception")
    if request.ledger:
        with open(request.ledger, "a") as ledger:  # one short write: atomic with O_APPEND
            ledger.write(f"{ctx.step_key}:{ctx.attempt}:{ctx.fencing_token}\n")
    if request.mode == "unencodable":
        return Unencodable(value="x", blob=object())
    if request.mode == "huge":
        return ProbeData(value=os.urandom(request.size // 2).hex())
    return ProbeData(value=ctx.idempotency_key)


def registry() -> TaskRegistry:
    return TaskRegistry([probe])


def command(task_id: str, request: ProbeRequest, attempt: int = 1, timeout_at_ms: int = 0,
            fencing_token: int = 1) -> msg.ExecuteStep:
    timeout = timeout_at_ms or int(time.time() * 1000) + 600_000
    return msg.ExecuteStep(task_id, probe.name, "Echo", attempt, QUEUE,
                           request.model_dump_json(), {}, f"{task_id}:Echo:{attempt}", timeout,
                           fencing_token)


def send(producer: KafkaProducer, codec: AvroCodec, topics: Topics,
         step_command: msg.ExecuteStep, message_id: str | None = None) -> str:
    message_id = message_id or f"{step_command.task_id}:cmd:{step_command.attempt}"
    envelope = Envelope(payload=step_command, message_id=message_id,
                        task_id=step_command.task_id, correlation_id=step_command.task_id,
                        causation_id=None, occurred_at_ms=int(time.time() * 1000),
                        task_type=probe.name)
    producer.send_and_wait(topics.step_commands(QUEUE),
                           f"{step_command.task_id}:{step_command.step}".encode(),
                           codec.encode(envelope))
    return message_id


def ensure_probe_topics(bootstrap: str, topics: Topics, partitions: int = 2) -> None:
    ensure_topics(bootstrap, [topics.step_commands(QUEUE), topics.step_results,
                              topics.dead_letter], partitions=partitions)


@dataclass
class InProcessWorker:
    runner: StepRunner
    loop: ParallelConsumerLoop
    stop: threading.Event
    thread: threading.Thread = field(init=False)

    def start(self) -> InProcessWorker:
        self.thread = threading.Thread(target=self.loop.run, daemon=True, name="probe-worker")
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


def in_process_worker(
    bootstrap: str, codec: AvroCodec, topics: Topics, *, concurrency: int = 2,
    producer: KafkaProducer | None = None, now_ms: Callable[[], int] | None = None,
    max_result_bytes: int = 900_000, group: str | None = None,
) -> InProcessWorker:
    stop = threading.Event()
    clock = now_ms or (lambda: int(time.time() * 1000))
    producer = producer or KafkaProducer(bootstrap, "probe-worker")
    runner = StepRunner(registry(), None, producer, codec, topics, CancellationBook(), clock,
                        stop, max_result_bytes)
    loop = ParallelConsumerLoop(
        ConsumerSettings(bootstrap=bootstrap, group_id=group or f"probe-{uuid.uuid4().hex[:8]}",
                         topics=[topics.step_commands(QUEUE)],
                         dead_letter_topic=topics.dead_letter, client_id="probe-worker"),
        codec, runner.handle, producer, stop, clock, concurrency=concurrency,
        shutdown_seconds=5,
    )
    return InProcessWorker(runner, loop, stop)


def read_envelopes(bootstrap: str, codec: AvroCodec, topic: str, expected: int,
                   timeout_s: float = 60.0, settle_s: float = 1.0) -> list[Envelope]:
    """Everything on ``topic`` once ``expected`` records other than heartbeats (every step
    run sends a start report) arrived and nothing more came for ``settle_s`` (or at the
    timeout)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    found: list[Envelope] = []
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                found.append(codec.decode(message.value()))
                quiet_since = time.monotonic()
            elif (len(results_of(found)) >= expected
                  and time.monotonic() - quiet_since >= settle_s):
                break
    finally:
        consumer.close()
    return found


def results_of(envelopes: list[Envelope]) -> list[Any]:
    return [e.payload for e in envelopes if not isinstance(e.payload, msg.StepHeartbeat)]

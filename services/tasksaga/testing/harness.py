"""Run a saga in process: the real orchestrator and the real step runner, on in-memory ports.

Every message takes the production path: commands are Avro-encoded onto the in-memory bus,
the orchestrator decides and writes its events, outbox and timers to the in-memory store in
one transaction, the outbox is relayed to the bus, and the step worker runs each step command
with the context production gives a handler (its data, heartbeats, cancellation, object store)
and sends its result back. Nothing sleeps and no thread runs: time is a ``ManualClock`` that
the run moves to the next due timer when nothing else can happen, so retry backoffs, step
timeouts and the task's deadline fire in order, instantly.
"""

from __future__ import annotations

import functools
import io
from collections import deque
from typing import Any

from pydantic import BaseModel

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_parallel import Lease
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.api.api_steps import run_api_steps
from tasksaga.core import messages as msg
from tasksaga.core.artifacts import indexed_name
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.registry import TaskRegistry
from tasksaga.core.request_fields import UploadedFile, UploadStepData
from tasksaga.core.shards import ShardMap
from tasksaga.core.state import TaskStatus
from tasksaga.core.steps import StepDef
from tasksaga.orchestrator.processor import Orchestrator, database_clock
from tasksaga.testing.clock import ManualClock
from tasksaga.testing.faults import FaultPlan
from tasksaga.testing.memory_artifact_refs import InMemoryArtifactRefs
from tasksaga.testing.memory_bus import InMemoryBus, PublishedRecord
from tasksaga.testing.memory_objects import InMemoryObjectStore
from tasksaga.testing.memory_store import InMemoryEventStore
from tasksaga.testing.report import TaskRun
from tasksaga.worker.artifacts import ArtifactStore
from tasksaga.worker.cancellation import CancellationBook
from tasksaga.worker.runner import StepRunner

#: How far ``run_until_settled`` may move the clock before it calls the task stuck.
DEFAULT_TIME_BUDGET_MS = 7 * 24 * 3_600_000


class SagaStuck(AssertionError):
    """The task neither finished nor has anything left that could move it on."""


@functools.cache
def _codec() -> AvroCodec:
    return AvroCodec()  # the contracts parse once per process, not once per test


class SagaTestRun:
    """One in-process deployment of the given definitions.

    ``faults`` injects failures (``run.faults.fail("Step", times=2)``); ``clock``, ``store``,
    ``bus`` and ``objects`` are the in-memory ports, there to be looked at. ``chains``: as a
    deployed orchestrator's by default (tasksaga.core.chains); off, a test acts between steps.
    """

    def __init__(self, *definitions: TaskDefinition, clock: ManualClock | None = None,
                 objects: InMemoryObjectStore | None = None, faults: FaultPlan | None = None,
                 jitter: float = 0.0, shards: ShardMap | None = None, chains: bool = False,
                 ) -> None:
        if not definitions:
            raise ValueError("SagaTestRun needs at least one task definition")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter is a random fraction in [0, 1), got {jitter}")
        self.clock = clock or ManualClock()
        # ``shards``: the store spread over shards (core/shards.py), as a sharded deployment's.
        self.store = InMemoryEventStore(self.clock, shards)
        self.bus = InMemoryBus()
        self.objects = objects or InMemoryObjectStore()
        self._faults = faults or FaultPlan()
        self.topics = Topics("test")
        self.codec = _codec()
        self.registry = TaskRegistry(definitions)  # diagnosed as a service would
        self.orchestrator = Orchestrator(self.registry, self.store, self.codec, self.topics,
                                         database_clock, lambda: jitter, chains=chains)
        self.cancellations = CancellationBook()
        # The worker (and the API steps) run copies whose handlers consult the fault plan.
        self._wrapped = {(d.name, d.version): self._faults.wrap(d) for d in definitions}
        self._worker_registry = TaskRegistry(self._wrapped.values())
        self.artifact_refs = InMemoryArtifactRefs()
        self.artifacts = ArtifactStore(self.objects, self.artifact_refs)
        self.worker = StepRunner(
            self._worker_registry, self.objects, self.bus, self.codec,
            self.topics, self.cancellations, self.clock.now_ms, artifacts=self.artifacts)
        self._queued: deque[tuple[str, Envelope]] = deque()
        self._running_steps = False
        self._task_ids: list[str] = []
        self._uploads = 0
        self._operator_actions = 0

    @property
    def faults(self) -> FaultPlan:
        """The failures to inject (the plan the handlers were wrapped with: not replaceable)."""
        return self._faults

    # -- driving the run -----------------------------------------------------------------------

    def upload(self, filename: str, content: bytes, *, step: str | None = None,
               content_type: str = "application/octet-stream") -> UploadedFile:
        """Store a file as the API's upload step would; put what it returns in the request."""
        upload_steps = [s for d in self.registry for s in d.upload_steps()
                        if step is None or s.name == step]
        if len(upload_steps) != 1:
            names = sorted({s.name for d in self.registry for s in d.upload_steps()})
            raise ValueError(f"upload(step=...) must name one upload step of {names}")
        upload_step = upload_steps[0]
        assert upload_step.upload is not None
        self._uploads += 1
        key = f"default/upload-{self._uploads}/{upload_step.name}/{filename}"
        size = self.objects.put_stream(upload_step.upload.bucket, key, io.BytesIO(content),
                                       content_type)
        return UploadedFile(bucket=upload_step.upload.bucket, key=key, filename=filename,
                            content_type=content_type, size=size)

    def submit(self, request: BaseModel, *, task_type: str | None = None,
               task_id: str | None = None, tenant: str = "default",
               settle: bool = True) -> TaskRun:
        """Submit a task as the API would (its API steps run now) and run it: until it settles
        (skipping ahead to each due timer) or, with ``settle=False``, as far as it goes without
        the clock moving."""
        definition = self._definition(task_type)
        if not isinstance(request, definition.request_type):
            raise TypeError(f"{definition.name} takes a {definition.request_type.__name__} "
                            f"request, got {type(request).__name__}")
        task_id = task_id or f"task-{len(self._task_ids) + 1}"
        if task_id in self._task_ids:
            raise ValueError(f"task id {task_id!r} was already submitted in this run")
        self._check_fault_plan()
        wrapped = self._wrapped[(definition.name, definition.version)]
        api_steps = run_api_steps(wrapped, task_id, request,
                                  self._upload_results(definition, task_id, request),
                                  self.objects, self.artifacts)
        self._task_ids.append(task_id)
        self._send(msg.SubmitTask(task_id, definition.name, request.model_dump_json(), None,
                                  None, self.clock.now_ms(), api_steps, tenant,
                                  definition_version=definition.version),
                   task_id, definition.name, f"{task_id}:submit")
        self._run(task_id, settle)
        return TaskRun(self.store, task_id)

    def cancel(self, task_id: str | None = None, reason: str = "cancelled by the test") -> None:
        """Cancel as the API's cancel route does. Inside a handler (``faults.during``), the
        running step's cancellation signal is set before the handler goes on."""
        task_id = self._task(task_id)
        self._send(msg.CancelTask(task_id, reason, self.clock.now_ms()), task_id,
                   self._task_type(task_id), self._operator_message_id(task_id, "cancel"))
        self.run_now()

    def retry_compensation(self, task_id: str | None = None, settle: bool = True) -> None:
        """An operator's retry of failed compensations."""
        task_id = self._task(task_id)
        self._send(msg.RetryCompensation(task_id, self.clock.now_ms()), task_id,
                   self._task_type(task_id), self._operator_message_id(task_id, "retry"))
        self._run(task_id, settle)

    def skip_compensation(self, step: str, reason: str, task_id: str | None = None,
                          settle: bool = True) -> None:
        """An operator's skip of ``step``'s compensation that failed for good (the chain of
        compensations goes on past it)."""
        task_id = self._task(task_id)
        self._send(msg.SkipCompensation(task_id, step, reason, "test", self.clock.now_ms()),
                   task_id, self._task_type(task_id),
                   self._operator_message_id(task_id, "skip-compensation"))
        self._run(task_id, settle)

    def resolve(self, reason: str, task_id: str | None = None) -> None:
        """An operator marks a task in CompensationFailed or NeedsAttention resolved."""
        task_id = self._task(task_id)
        self._send(msg.ResolveTask(task_id, reason, "test", self.clock.now_ms()), task_id,
                   self._task_type(task_id), self._operator_message_id(task_id, "resolve"))
        self.run_now()

    def redrive(self, reason: str, task_id: str | None = None, settle: bool = True) -> None:
        """An operator resends the commands of the task's steps in flight."""
        task_id = self._task(task_id)
        self._send(msg.RedriveTask(task_id, reason, "test", self.clock.now_ms()), task_id,
                   self._task_type(task_id), self._operator_message_id(task_id, "redrive"))
        self._run(task_id, settle)

    def signal(self, signal: str, data: BaseModel | None = None, *, task_id: str | None = None,
               signal_id: str | None = None) -> None:
        """Send a wait_for step's signal as ``POST /tasks/{id}/signals/{signal}`` does, then
        run without moving the clock. A repeated ``signal_id`` records nothing new."""
        task_id = self._task(task_id)
        step = self.registry.get(self._task_type(task_id)).get_step(signal)
        if step.signal is None:
            raise ValueError(f"step {signal!r} is not a wait_for step")
        if step.data_type is not None and not isinstance(data, step.data_type):
            raise TypeError(f"signal {signal!r} takes a {step.data_type.__name__}, got "
                            f"{type(data).__name__}")
        self._operator_actions += 1
        signal_id = signal_id or f"signal-{self._operator_actions}"
        self._send(msg.SendSignal(task_id, signal, signal_id,
                                  data.model_dump_json() if data else "{}", self.clock.now_ms(),
                                  "test"), task_id, self._task_type(task_id),
                   f"signal:{task_id}:{signal}:{signal_id}")
        self.run_now()

    def retry_forward(self, task_id: str | None = None, settle: bool = True) -> None:
        """An operator's forward retry of a task in NeedsAttention."""
        task_id = self._task(task_id)
        self._send(msg.RetryForward(task_id, self.clock.now_ms()), task_id,
                   self._task_type(task_id), self._operator_message_id(task_id, "retry-forward"))
        self._run(task_id, settle)

    def deploy(self, definition: TaskDefinition) -> None:
        """Deploy another version (or type) to the orchestrator and the worker, mid-run: new
        submissions take the newest version, running tasks keep theirs."""
        wrapped = self._faults.wrap(definition)
        self.registry.register(definition)
        self._worker_registry.register(wrapped)
        self._wrapped[(definition.name, definition.version)] = wrapped

    def retire(self, task_type: str, version: int) -> None:
        """Deploy without one version: its running tasks park (VersionMissing)."""
        self.registry.unregister(task_type, version)
        self._worker_registry.unregister(task_type, version)
        del self._wrapped[(task_type, version)]

    def migrate(self, task_id: str | None = None, *, to_version: int,
                settle: bool = True) -> None:
        """An operator's move of a parked task to a deployed, compatible version."""
        task_id = self._task(task_id)
        self._send(msg.MigrateTask(task_id, to_version, self.clock.now_ms()), task_id,
                   self._task_type(task_id), self._operator_message_id(task_id, "migrate"))
        self._run(task_id, settle)

    def advance(self, ms: int = 0, *, seconds: float = 0.0) -> None:
        """Move the clock forward, firing every timer that falls due on the way at its own
        time (a retry due in 0.5 s runs, and its own next timer is then scheduled from then)."""
        target = self.clock.now_ms() + ms + round(seconds * 1000)
        if target < self.clock.now_ms():
            raise ValueError("the clock only moves forward")
        self.run_now()
        while (delay := self.store.next_timer_delay_ms(self.registry.names())) is not None \
                and self.clock.now_ms() + delay <= target:
            self.clock.advance_to(self.clock.now_ms() + delay)
            self.run_now()
        self.clock.advance_to(target)
        self.run_now()

    def run_until_settled(self, *task_ids: str,
                          budget_ms: int = DEFAULT_TIME_BUDGET_MS) -> None:
        """Run, skipping ahead to each next timer, until the tasks (all submitted ones by
        default) are completed, failed, cancelled or waiting for an operator."""
        wanted = list(task_ids) or list(self._task_ids)
        started = self.clock.now_ms()
        self.run_now()
        while not all(_settled(TaskRun(self.store, t).status) for t in wanted):
            delay = self.store.next_timer_delay_ms(self.registry.names())
            if delay is None or self.clock.now_ms() + delay - started > budget_ms:
                stuck = [t for t in wanted if not _settled(TaskRun(self.store, t).status)]
                trail = "\n".join(f"  {line}" for line in TaskRun(self.store, stuck[0]).audit())
                why = "no timer is left" if delay is None else f"not within {budget_ms} ms"
                raise SagaStuck(f"tasks {stuck} did not settle: {why}\naudit trail of "
                                f"{stuck[0]}:\n{trail}")
            self.clock.advance_to(self.clock.now_ms() + delay)
            self.run_now()

    def run_now(self) -> None:
        """Deliver every message and run every step command there is, without moving the
        clock: fire due timers, relay the outbox, hand results to the orchestrator."""
        if self._running_steps:  # a handler called in (to cancel): deliver, run no step
            self._deliver_all()
            return
        self._running_steps = True
        try:
            while True:
                self._deliver_all()
                if not self._queued:
                    return
                topic, envelope = self._queued.popleft()
                self.worker.handle(envelope, Lease(topic, 0, 0))
        finally:
            self._running_steps = False

    def task(self, task_id: str | None = None) -> TaskRun:
        return TaskRun(self.store, self._task(task_id))

    # -- the wiring ----------------------------------------------------------------------------

    def _run(self, task_id: str, settle: bool) -> None:
        if settle:
            self.run_until_settled(task_id)
        else:
            self.run_now()

    def _operator_message_id(self, task_id: str, action: str) -> str:
        # Each request its own id: two cancels at one instant are two messages, as over HTTP.
        self._operator_actions += 1
        return f"{task_id}:{action}:{self._operator_actions}"

    def _check_fault_plan(self) -> None:
        known = {s.name for d in self.registry for s in d.steps}
        unknown = sorted(set(self._faults.steps()) - known)
        if unknown:
            raise ValueError(f"the fault plan names steps {unknown} that no definition of this "
                             f"run has; its steps are {sorted(known)}")

    def _send(self, payload: Any, task_id: str, task_type: str, message_id: str) -> None:
        envelope = Envelope(payload=payload, message_id=message_id, task_id=task_id,
                            correlation_id=task_id, causation_id=None,
                            occurred_at_ms=self.clock.now_ms(), task_type=task_type)
        self.bus.send_and_wait(self.topics.task_commands, task_id.encode(),
                               self.codec.encode(envelope))

    def _deliver_all(self) -> None:
        while True:
            fired = self.orchestrator.fire_due_timers(limit=10_000)
            relayed = self.store.take_outbox()
            for record in relayed:  # the outbox relay: published only once committed
                self.bus.send_and_wait(record.topic, record.key, record.value, record.headers)
            received = self.bus.take_new()
            for published in received:
                self._route(published)
            if not (fired or relayed or received):
                return

    def _route(self, record: PublishedRecord) -> None:
        envelope = self.codec.decode(record.value)
        payload = envelope.payload
        if record.topic in (self.topics.task_commands, self.topics.step_results):
            if isinstance(payload, msg.StepAttemptFailed) and (
                    payload.task_id, payload.step, payload.attempt) in self.faults.hung:
                return  # a hung attempt never answers
            self.orchestrator.handle(envelope)
        elif record.topic == self.topics.step_cancellations:
            self.cancellations.cancel((payload.task_id, payload.step, payload.attempt))
        elif record.topic.startswith(self.topics.step_commands("")):
            self._queued.append((record.topic, envelope))

    def _upload_results(self, definition: TaskDefinition, task_id: str,
                        request: BaseModel) -> list[msg.ApiStepResult]:
        results = []
        for step in definition.upload_steps():
            assert step.upload is not None
            value = getattr(request, step.upload.source)
            files = [value] if isinstance(value, UploadedFile) else list(value or [])
            for file in files:
                if not self.objects.exists(file.bucket, file.key):
                    raise ValueError(f"{file.filename!r} of {step.upload.source!r} is not in "
                                     "the object store: make it with run.upload(...)")
            results.append(msg.ApiStepResult(step.name,
                                             UploadStepData(files=files).model_dump_json(),
                                             self._publish_uploads(task_id, step, value, files)))
        return results

    def _publish_uploads(self, task_id: str, step: StepDef, value: object,
                         files: list[UploadedFile]) -> dict[str, str]:
        """As the API does for an upload step with ``produces=``: each file an artifact."""
        if not step.produces:
            return {}
        published: dict[str, str] = {}
        for index, file in enumerate(files):
            name = (step.produces[0] if isinstance(value, UploadedFile)
                    else indexed_name(step.produces[0], index))
            content = io.BytesIO(b"".join(self.objects.open_stream(file.bucket, file.key)))
            published[name] = self.artifacts.publish(content, f"{task_id}:{step.name}").to_json()
        return published

    def _definition(self, task_type: str | None) -> TaskDefinition:
        if task_type is not None:
            return self.registry.get(task_type)
        definitions = list(self.registry)
        if len(definitions) != 1:
            raise ValueError(f"this run has {len(definitions)} task types: pass task_type= one "
                             f"of {self.registry.names()}")
        return definitions[0]

    def _task(self, task_id: str | None) -> str:
        if task_id is None:
            if not self._task_ids:
                raise ValueError("no task was submitted in this run")
            return self._task_ids[-1]
        # A child or depends_on task was started by another one: it has a stream.
        if task_id not in self._task_ids and task_id not in self.store.stream_ids():
            raise ValueError(f"task {task_id!r} was neither submitted in this run nor "
                             "started by one of its tasks")
        return task_id

    def _task_type(self, task_id: str) -> str:
        return TaskRun(self.store, task_id).state.task_type


def _settled(status: TaskStatus) -> bool:
    # A parked task (its version not deployed) waits for an operator, as a terminal one does.
    return status.is_terminal or status is TaskStatus.VERSION_MISSING


def run_saga(definition: TaskDefinition, request: BaseModel, *,
             faults: FaultPlan | None = None) -> TaskRun:
    """Submit one task in a fresh run and run it until it settles; the task's report."""
    return SagaTestRun(definition, faults=faults).submit(request)

"""The orchestrator's handling of one message: load, decide, append — in one transaction.

Inbox record, appended events, outbox records and timers commit together, so a redelivered
message is a no-op and nothing decided is lost or sent before it is durable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from psycopg import errors

from tasksaga.adapters import faults, telemetry
from tasksaga.adapters.avro_codec import AvroCodec, DecodeError
from tasksaga.adapters.kafka_bus import Unprocessable
from tasksaga.adapters.outbox_publisher import OutboxPublisher
from tasksaga.adapters.service_metrics import StepMetrics
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.core import messages as msg
from tasksaga.core.children import child_not_started
from tasksaga.core.decide import Decision, decide
from tasksaga.core.ports import (
    ConcurrencyConflict,
    EventStore,
    EventStoreTransaction,
)
from tasksaga.core.registry import TaskRegistry, UnknownTaskType
from tasksaga.core.state import TaskState
from tasksaga.orchestrator.outbox_records import OutboxRecords
from tasksaga.orchestrator.state_cache import StateCache
from tasksaga.orchestrator.versioning import VersionRouter
from tasksaga.workflow.definition import WorkflowDefinition
from tasksaga.workflow.driver import WorkflowDriver
from tasksaga.workflow.runtime import WorkflowRuntime

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 20
UNREADABLE_TIMER_DELAY_MS = 300_000
_Item = TypeVar("_Item")  # a message grouped by its task's shard

# The time decisions are taken at, read once per transaction. Timers are compared with one
# clock: the database's, for scheduling (decide's now + delay) and for firing (due <= now),
# so an orchestrator whose own clock jumps never fires a timeout or compensation early.
Clock = Callable[[EventStoreTransaction], int]


def database_clock(tx: EventStoreTransaction) -> int:
    return tx.database_now_ms()


class _UnitOfWork:
    """One transaction: states decided in it are seen by its later messages, and reach the
    cache only once it committed."""

    def __init__(self, tx: EventStoreTransaction, cache: StateCache, clock: Clock) -> None:
        self.tx = tx
        self.cache = cache
        self.decided: dict[str, TaskState] = {}
        self.versions: dict[str, int] = {}
        # (task id, task type, events) written, for the metrics once the transaction commits.
        self.written: list[tuple[str, str, Sequence[object]]] = []
        # The live workflow bodies decided in it (tasksaga.workflow.runtime), kept on commit.
        self.drivers: dict[str, tuple[int, WorkflowDriver | None]] = {}
        self._clock = clock
        self._now_ms: int | None = None

    def now_ms(self) -> int:
        """The transaction's time (read once: one round trip per batch, not per message)."""
        if self._now_ms is None:
            self._now_ms = self._clock(self.tx)
        return self._now_ms

    @property
    def touched(self) -> set[str]:
        return set(self.versions)

    def lock(self, task_ids: list[str]) -> None:
        """Lock streams in a fixed order, so two batches never wait on each other in a cycle
        (a whole batch's in one round trip)."""
        unlocked = set(task_ids) - set(self.versions)
        if unlocked:
            self.versions.update(self.tx.lock_streams(unlocked))

    def lock_and_claim(self, task_ids: list[str], consumer: str,
                       message_ids: Sequence[str]) -> set[str]:
        """``lock`` the streams and claim the messages (one round trip); the ids claimed."""
        versions, claimed = self.tx.lock_and_claim(set(task_ids) - set(self.versions),
                                                    consumer, message_ids)
        self.versions.update(versions)
        return claimed

    def try_lock(self, task_id: str) -> bool:
        version = self.tx.lock_stream(task_id, wait=False)
        if version is None:
            return False
        self.versions[task_id] = version
        return True

    def load(self, task_id: str) -> TaskState:
        if task_id in self.decided:
            return self.decided[task_id]
        self.lock([task_id])
        if self.versions[task_id] == 0:
            return TaskState()  # no stream yet (a new task): nothing to read
        cached = self.cache.get(task_id)
        if cached is not None and cached.version == self.versions[task_id]:
            return cached
        return self.tx.load_state(task_id)


class Orchestrator:
    def __init__(
        self,
        registry: TaskRegistry,
        store: EventStore,
        codec: AvroCodec,
        topics: Topics,
        clock: Clock,
        random: Callable[[], float],
        consumer_name: str = "orchestrator",
        state_cache_bytes: int | None = None,
        step_metrics: StepMetrics | None = None,
        workflows: WorkflowRuntime | None = None,
        publisher: OutboxPublisher | None = None,
        chains: bool = False,
    ) -> None:
        self._registry = registry
        self._chains = chains  # first dispatches carry chains (tasksaga.core.chains)
        self._store = store
        self._codec = codec
        self._records = OutboxRecords(registry, codec, topics)
        self._clock = clock
        self._random = random
        self._consumer = consumer_name
        self._cache = StateCache() if state_cache_bytes is None else StateCache(state_cache_bytes)
        self._metrics = step_metrics
        self.workflows = workflows or WorkflowRuntime()
        self._publisher = publisher
        self._publish_order = threading.Lock()

    # -- inbound messages ----------------------------------------------------------------------

    def handle(self, envelope: Envelope) -> None:
        self.handle_batch([envelope])

    def handle_batch(self, envelopes: Sequence[Envelope]) -> None:
        """Handle messages in one transaction per shard (core/shards.py; one database: one
        commit, one fsync, for the whole batch).

        Raises when any message cannot be handled; the caller then handles them one by one,
        which isolates the bad one (and its dead letter) from the others.
        """
        commands: list[Envelope] = []
        beats: list[msg.StepHeartbeat] = []
        for envelope in envelopes:
            payload = envelope.payload
            if isinstance(payload, msg.StepHeartbeat):
                beats.append(payload)
            elif isinstance(payload, msg.SubmitTask | msg.CancelTask | msg.RetryCompensation
                            | msg.RetryForward | msg.SendSignal | msg.MigrateTask
                            | msg.ChildTaskFinished | msg.CompensateTask
                            | msg.StepSucceeded | msg.StepAttemptFailed
                            | msg.CompensationSucceeded | msg.CompensationAttemptFailed
                            | msg.SkipCompensation | msg.ResolveTask | msg.RedriveTask):
                commands.append(envelope)
            else:
                raise Unprocessable(
                    f"the orchestrator does not handle {type(payload).__name__}")
        # One transaction per shard: a task's inbox claim, events, outbox and timers are
        # written on its own shard. Should a later shard's fail, the caller handles the batch
        # again one by one, and what an earlier shard committed is then a redelivery (no-op).
        beats_by_shard = self._by_shard(beats, lambda b: b.task_id)
        commands_by_shard = self._by_shard(commands, lambda e: e.task_id)
        for shard in dict.fromkeys([*beats_by_shard, *commands_by_shard]):
            self._handle_commands(shard, beats_by_shard.get(shard, []),
                                  commands_by_shard.get(shard, []))

    def _by_shard(self, items: Sequence[_Item], task_of: Callable[[_Item], str]
                  ) -> dict[str, list[_Item]]:
        grouped: dict[str, list[_Item]] = {}
        for item in items:
            grouped.setdefault(self._store.shard_of(task_of(item)), []).append(item)
        return grouped

    def _handle_commands(self, shard: str, beats: Sequence[msg.StepHeartbeat],
                         commands: Sequence[Envelope]) -> None:
        """A shard's part of a batch in one transaction: its heartbeats first (as they
        arrived before the results that follow them), then its commands and results."""
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                with self._unit_of_work(shard) as work:
                    claimed = work.lock_and_claim(
                        [b.task_id for b in beats] + [e.task_id for e in commands],
                        self._consumer, [e.message_id for e in commands])
                    self._record_heartbeats(work, beats)
                    for envelope in commands:
                        # Its own span, so the commands and events it causes continue the
                        # task's trace rather than the batch's.
                        with telemetry.message_span(envelope):
                            if envelope.message_id in claimed:
                                claimed.discard(envelope.message_id)  # twice in one batch
                                self._decide_and_write(work, envelope.payload,
                                                       envelope.message_id, envelope)
                return
            except (ConcurrencyConflict, errors.DeadlockDetected) as conflict:
                log.info("retrying after a concurrent append: %s", conflict)
        raise RuntimeError(f"gave up on {len(commands)} messages after repeated conflicts")

    @contextmanager
    def _unit_of_work(self, shard: str) -> Iterator[_UnitOfWork]:
        # Entered by hand, so that its commit (its __exit__) runs under the publish lock below.
        transaction = self._store.transaction(shard)
        work = _UnitOfWork(transaction.__enter__(), self._cache, self._clock)
        try:
            yield work
        except BaseException as error:
            self._cache.evict(work.touched)
            transaction.__exit__(type(error), error, error.__traceback__)  # rolls back
            raise
        # Commit and publish under one lock: this process's transactions reach Kafka in the
        # order they committed (the timer loop and the consumer loop may write one task).
        with self._publish_order:
            settled = (self._publisher.take_acknowledged(shard)
                       if self._publisher is not None else [])
            work.tx.delete_published(settled)  # rows of earlier commits, deleted with this one
            try:
                transaction.__exit__(None, None, None)  # writes what was kept, commits
            except BaseException:
                self._cache.evict(work.touched)
                if self._publisher is not None:
                    self._publisher.give_back(shard, settled)
                raise
            faults.hit("after_append_before_produce")  # chaos suite (R1); no-op unless armed
            if self._publisher is not None:
                self._publisher.publish(shard, work.tx.enqueued)
        self._cache.put_all(work.decided)  # only what committed
        self.workflows.keep(work.drivers)
        if self._metrics is not None and work.written:
            try:
                self._metrics.record(work.written)
            except Exception:  # a metric must never fail a committed transaction's caller
                log.exception("recording step metrics failed")

    def forget_live_state(self) -> None:
        """Drop the cached states and workflow bodies, as a restart does: the next message of
        each task reads (and a workflow replays) its stream."""
        self._cache.clear()
        self.workflows.clear()

    def next_timer_delay_ms(self) -> int | None:
        """Milliseconds until this orchestrator's next timer is due, by the database's clock."""
        return self._store.next_timer_delay_ms(self._registry.names())

    def fire_due_timers(self, limit: int = 100) -> int:
        """Fire due timers of every shard (up to ``limit`` on each); each in its own
        transaction, on its task's shard, with the events it causes."""
        return sum(self._fire_due_timers_on(shard, limit) for shard in self._store.shard_names())

    def _fire_due_timers_on(self, shard: str, limit: int) -> int:
        fired = 0
        while fired < limit:
            timer: msg.TimerFired | None = None
            try:
                with self._unit_of_work(shard) as work:
                    due = work.tx.claim_due_timers(work.now_ms(), 1, self._registry.names())
                    if not due:
                        return fired
                    timer = due[0]
                    if not work.try_lock(timer.task_id):
                        return fired  # its task is being written; the timer stays due
                    work.tx.delete_timer(timer)
                    cause = f"timer:{timer.task_id}:{timer.kind}:{timer.step}:{timer.attempt}"
                    # A timer row keeps no trace context: what it causes (a retry, a timeout)
                    # starts a trace of its own, found by the task id attribute.
                    with telemetry.span(f"orchestrator timer {timer.kind}",
                                        **{"tasksaga.task_id": timer.task_id,
                                           "tasksaga.step": timer.step}):
                        self._decide_and_write(work, timer, cause)
                fired += 1
            except (ConcurrencyConflict, errors.DeadlockDetected) as conflict:
                log.info("timer raced a concurrent append, retrying: %s", conflict)
            except (DecodeError, Unprocessable) as error:
                # One task whose stream cannot be read (a key missing from the ring, a corrupt
                # event) must not stop every timer: it waits, and is tried again later.
                assert timer is not None
                log.error("timer %s of task %s cannot fire, postponed %d s: %s", timer.kind,
                          timer.task_id, UNREADABLE_TIMER_DELAY_MS // 1000, error)
                with self._store.transaction(shard) as tx:
                    tx.postpone_timer(timer, tx.database_now_ms() + UNREADABLE_TIMER_DELAY_MS)
        return fired

    # -- the transaction's body ----------------------------------------------------------------

    def _decide_and_write(self, work: _UnitOfWork, message: msg.Inbound, cause: str,
                          envelope: Envelope | None = None) -> None:
        state = work.load(message.task_id)
        task_type = message.task_type if isinstance(message, msg.SubmitTask) else state.task_type
        if not task_type:
            log.warning("ignoring %s for unknown task %s", type(message).__name__,
                        message.task_id)
            return
        try:  # the newest version for a new task, its own for a running one
            workflow = self._workflow_of(task_type)
            if workflow is not None:  # a code-first workflow: its body decides
                decision = self.workflows.decide(
                    workflow, state, message, work.now_ms(), self._random,
                    lambda: work.tx.load_events(message.task_id), work.drivers)
            else:
                router = VersionRouter(self._registry, self._codec, self._random,
                                       chains=self._chains)
                decision = router.decide_message(state, message, envelope, work.now_ms())
        except UnknownTaskType as error:
            refusal = child_not_started(message, str(error), work.now_ms())
            if refusal is None:
                raise Unprocessable(str(error)) from error
            # A parent waits for this child: tell it (its step fails), rather than leave it
            # waiting for a dead letter.
            log.error("child task %s not started: %s", message.task_id, error)
            work.tx.enqueue([self._records.task_command(
                refusal, f"{message.task_id}:not-started", cause, work.now_ms(),
                telemetry.inject_headers())])
            return
        self._write(work.tx, state, decision, cause, work.now_ms())
        if decision.events:
            work.decided[message.task_id] = decision.state
            work.written.append((message.task_id, task_type, decision.events))

    def _workflow_of(self, task_type: str) -> WorkflowDefinition | None:
        """The workflow definition that decides this task, if it is one (versions: a
        workflow's code changes are guarded by wf.patched, not by definition versions)."""
        try:
            definition = self._registry.get(task_type)
        except UnknownTaskType:
            return None
        return definition if isinstance(definition, WorkflowDefinition) else None

    def _write(
        self, tx: EventStoreTransaction, before: TaskState, decision: Decision, cause: str,
        now: int,
    ) -> None:
        if decision.is_empty:
            return
        after = decision.state
        envelopes = [
            Envelope(
                payload=event,
                message_id=f"{after.task_id}:{version}",
                task_id=after.task_id,
                correlation_id=after.task_id,
                causation_id=cause,
                occurred_at_ms=now,
                task_type=after.task_type,
                version=version,
            )
            for version, event in enumerate(decision.events, start=before.version + 1)
        ]
        encoded = [self._codec.encode(envelope) for envelope in envelopes]  # once: log and Kafka
        tx.append(after.task_id, before.version, envelopes, encoded)
        faults.hit("after_append_before_commit")  # chaos suite (R1); no-op unless armed
        headers = telemetry.inject_headers()
        last_event_id = envelopes[-1].message_id if envelopes else cause
        tx.enqueue([*self._records.events(after, envelopes, encoded, headers),
                    *self._records.commands(after, decision.commands, last_event_id, now,
                                            headers)])
        tx.schedule(after.task_type, decision.timers)
        for timer in decision.unscheduled:  # after scheduling: the decision's last word
            tx.delete_timer(timer)

    def _record_heartbeats(self, work: _UnitOfWork, beats: Sequence[msg.StepHeartbeat]
                           ) -> None:
        """Heartbeats (a start report for every step) move the steps' deadlines and record
        progress. They are not events: no inbox record, and a lost or repeated heartbeat
        changes nothing."""
        for beat in beats:
            state = work.load(beat.task_id)
            try:  # the task's own version; a parked task's beats change nothing
                definition = self._registry.get(state.task_type, state.definition_version)
            except UnknownTaskType:
                continue
            if not state.task_type or not definition.has_step(beat.step):
                continue
            decision = decide(definition, state, beat, work.now_ms(), self._random)
            work.tx.schedule(state.task_type, decision.timers)
            if beat.progress is not None or beat.message is not None:  # not a bare start
                work.tx.record_progress(beat.task_id, beat.step, beat.attempt,
                                        beat.progress, beat.message)

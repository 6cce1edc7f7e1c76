"""The EventStore port's contract: append with expected version, inbox, outbox and timers, all
or nothing per transaction."""

from __future__ import annotations

import dataclasses
import uuid
from abc import ABC, abstractmethod

import pytest

from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.envelope import Envelope
from tasksaga.core.ports import ConcurrencyConflict, EventStore, OutboxRecord, WrongShard
from tasksaga.core.state import TaskStatus

AT_MS = 1_700_000_000_000


def submitted(task_id: str, task_type: str = "Contract") -> Envelope:
    return _envelope(task_id, 1, task_type, ev.TaskSubmitted(
        task_id, task_type, "{}", None, None, AT_MS, None))


def completed(task_id: str, version: int, step: str) -> Envelope:
    return _envelope(task_id, version, "Contract", ev.StepCompleted(step, 1, "{}", AT_MS))


def _envelope(task_id: str, version: int, task_type: str, event: ev.TaskEvent) -> Envelope:
    return Envelope(payload=event, message_id=f"{task_id}:{version}", task_id=task_id,
                    correlation_id=task_id, causation_id=None, occurred_at_ms=AT_MS,
                    task_type=task_type, version=version)


def timer(task_id: str, kind: msg.TimerKind, step: str = "S", attempt: int = 1
          ) -> msg.TimerFired:
    return msg.TimerFired(task_id, kind, step, attempt)


class EventStoreContract(ABC):
    """Subclasses provide a ``store`` fixture and read back the committed outbox. A test opens
    its transactions on its task's shard, as the orchestrator does."""

    @abstractmethod
    def outbox(self, store: EventStore, topic: str) -> list[OutboxRecord]:
        """The committed, unpublished outbox records of ``topic``, in enqueue order."""

    @pytest.fixture
    def task_id(self) -> str:
        return f"contract-{uuid.uuid4()}"

    @pytest.fixture
    def task_type(self) -> str:
        """A task type of this test alone: no other test's timers are due for it."""
        return f"Contract{uuid.uuid4().hex[:12]}"

    def test_appended_events_load_back_in_order_and_fold_into_the_state(
        self, store: EventStore, task_id: str,
    ) -> None:
        with store.transaction(store.shard_of(task_id)) as tx:
            assert tx.lock_stream(task_id) == 0
            tx.append(task_id, 0, [submitted(task_id), completed(task_id, 2, "A")])
        with store.transaction(store.shard_of(task_id)) as tx:
            assert tx.lock_stream(task_id) == 2
            loaded = tx.load_events(task_id)
            state = tx.load_state(task_id)
        assert loaded == [submitted(task_id), completed(task_id, 2, "A")]
        assert state.status is TaskStatus.RUNNING and state.completion_order == ("A",)

    def test_a_stale_expected_version_conflicts_and_the_transaction_writes_nothing(
        self, store: EventStore, task_id: str,
    ) -> None:
        topic = f"contract-{uuid.uuid4().hex}"
        with store.transaction(store.shard_of(task_id)) as tx:
            tx.append(task_id, 0, [submitted(task_id)])
        with pytest.raises(ConcurrencyConflict), store.transaction(store.shard_of(task_id)) as tx:
            tx.claim_message("contract", f"{task_id}-m")
            tx.enqueue([OutboxRecord(topic, b"k", b"lost")])
            tx.append(task_id, 0, [submitted(task_id)])  # a zombie writer still at version 0
        with store.transaction(store.shard_of(task_id)) as tx:
            assert len(tx.load_events(task_id)) == 1
            assert tx.claim_message("contract", f"{task_id}-m")  # the claim rolled back too
        assert self.outbox(store, topic) == []

    def test_an_event_message_id_is_appended_once(self, store: EventStore, task_id: str) -> None:
        with store.transaction(store.shard_of(task_id)) as tx:
            tx.append(task_id, 0, [submitted(task_id)])
        other = task_on(store, store.shard_of(task_id))  # message ids are unique per shard
        replayed = dataclasses.replace(submitted(task_id), task_id=other)  # same message id
        with pytest.raises(ConcurrencyConflict), store.transaction(store.shard_of(task_id)) as tx:
            tx.append(other, 0, [replayed])

    def test_versions_must_follow_the_expected_version_without_gaps(
        self, store: EventStore, task_id: str,
    ) -> None:
        with (pytest.raises(ValueError, match="without gaps"),
              store.transaction(store.shard_of(task_id)) as tx):
            tx.append(task_id, 0, [completed(task_id, 2, "A")])

    def test_a_message_is_claimed_once_per_consumer(self, store: EventStore,
                                                    task_id: str) -> None:
        with store.transaction(store.shard_of(task_id)) as tx:
            assert tx.claim_message("orchestrator", task_id)
        with store.transaction(store.shard_of(task_id)) as tx:
            assert not tx.claim_message("orchestrator", task_id)
            assert tx.claim_message("another-consumer", task_id)

    def test_a_batch_claims_only_its_messages_not_processed_before(
        self, store: EventStore, task_id: str,
    ) -> None:
        shard = store.shard_of(task_id)
        with store.transaction(shard) as tx:
            assert tx.claim_messages("orchestrator", [f"{task_id}-1"]) == {f"{task_id}-1"}
        with store.transaction(shard) as tx:
            claimed = tx.claim_messages(
                "orchestrator", [f"{task_id}-1", f"{task_id}-2", f"{task_id}-2", f"{task_id}-3"])
            assert claimed == {f"{task_id}-2", f"{task_id}-3"}
            assert tx.claim_messages("orchestrator", []) == set()
            assert not tx.claim_message("orchestrator", f"{task_id}-3")

    def test_a_batch_locks_its_streams_and_reads_each_version_after_its_own_appends(
        self, store: EventStore, task_id: str,
    ) -> None:
        shard = store.shard_of(task_id)
        other, fresh = task_on(store, shard), task_on(store, shard)
        with store.transaction(shard) as tx:
            tx.append(task_id, 0, [submitted(task_id)])
            tx.append(other, 0, [submitted(other), completed(other, 2, "A")])
            # Appends this transaction made are seen by its own later reads.
            assert tx.lock_streams([other, task_id, fresh, task_id]) == {
                task_id: 1, other: 2, fresh: 0}
            tx.append(task_id, 1, [completed(task_id, 2, "A")])
            assert tx.load_state(task_id).completion_order == ("A",)
        with store.transaction(shard) as tx:
            assert tx.lock_streams([task_id]) == {task_id: 2}
            assert tx.lock_streams([]) == {}

    def test_a_batch_start_locks_reads_versions_and_claims_only_new_messages(
        self, store: EventStore, task_id: str,
    ) -> None:
        shard = store.shard_of(task_id)
        fresh = task_on(store, shard)
        with store.transaction(shard) as tx:
            tx.append(task_id, 0, [submitted(task_id)])
            tx.claim_messages("orchestrator", [f"{task_id}-1"])
        with store.transaction(shard) as tx:
            versions, claimed = tx.lock_and_claim(
                [task_id, fresh, task_id], "orchestrator",
                [f"{task_id}-1", f"{task_id}-2", f"{task_id}-2"])
            assert versions == {task_id: 1, fresh: 0}
            assert claimed == {f"{task_id}-2"}
            assert tx.database_now_ms() > 0 and tx.database_now_ms() > 0
            assert tx.lock_and_claim([], "orchestrator", []) == ({}, set())
        with store.transaction(shard) as tx:  # the claims committed with the transaction
            assert tx.lock_and_claim([task_id], "orchestrator", [f"{task_id}-2"]) == (
                {task_id: 1}, set())

    def test_published_rows_are_deleted_only_when_the_deleting_transaction_commits(
        self, store: EventStore,
    ) -> None:
        topic = f"contract-{uuid.uuid4().hex}"
        with store.transaction() as tx:
            tx.enqueue([OutboxRecord(topic, b"k", b"sent"), OutboxRecord(topic, b"k", b"kept")])
        sent, kept = (row_id for row_id, _ in tx.enqueued)
        with pytest.raises(RuntimeError), store.transaction() as later:
            later.delete_published([kept])
            raise RuntimeError("the batch fails before commit")
        with store.transaction() as later:
            later.delete_published([sent])
            later.enqueue([OutboxRecord(topic, b"k", b"new")])
        assert [r.value for r in self.outbox(store, topic)] == [b"kept", b"new"]

    def test_the_last_word_on_a_timer_in_a_transaction_is_what_commits(
        self, store: EventStore, task_id: str, task_type: str,
    ) -> None:
        beat, retry = (timer(task_id, msg.TimerKind.HEARTBEAT_TIMEOUT),
                       timer(task_id, msg.TimerKind.STEP_RETRY, attempt=2))
        with store.transaction(store.shard_of(task_id)) as tx:
            tx.schedule(task_type, [msg.ScheduleTimer(AT_MS + 100, beat),
                                    msg.ScheduleTimer(AT_MS + 300, beat)])
            tx.schedule(task_type, [msg.ScheduleTimer(AT_MS + 100, retry)])
            tx.delete_timer(retry)  # scheduled, then unscheduled by the same decision
            tx.record_progress(task_id, "S", 1, 0.25, "first")
            tx.record_progress(task_id, "S", 1, 0.5, "second")
        with store.transaction(store.shard_of(task_id)) as tx:
            assert tx.claim_due_timers(AT_MS + 299, 10, [task_type]) == []
            assert tx.claim_due_timers(AT_MS + 10_000, 10, [task_type]) == [beat]
            tx.delete_timer(beat)
            tx.schedule(task_type, [msg.ScheduleTimer(AT_MS + 100, retry)])  # deleted, then back
        with store.transaction(store.shard_of(task_id)) as tx:
            assert tx.claim_due_timers(AT_MS + 10_000, 10, [task_type]) == [retry]
            tx.delete_timer(retry)

    def test_outbox_records_are_kept_only_when_their_transaction_commits(
        self, store: EventStore,
    ) -> None:
        topic = f"contract-{uuid.uuid4().hex}"
        with store.transaction() as tx:
            tx.enqueue([OutboxRecord(topic, b"k", b"first", [("h", b"1")]),
                        OutboxRecord(topic, None, b"second")])
        with pytest.raises(RuntimeError), store.transaction() as tx:
            tx.enqueue([OutboxRecord(topic, b"k", b"rolled back")])
            raise RuntimeError("the orchestrator fails before commit")
        records = self.outbox(store, topic)
        assert [(r.key, r.value, list(r.headers)) for r in records] == [
            (b"k", b"first", [("h", b"1")]), (None, b"second", [])]

    def test_due_timers_are_claimed_earliest_first_and_only_for_their_task_types(
        self, store: EventStore, task_id: str, task_type: str,
    ) -> None:
        late, early = timer(task_id, msg.TimerKind.STEP_TIMEOUT), timer(
            task_id, msg.TimerKind.STEP_RETRY, attempt=2)
        later = timer(task_id, msg.TimerKind.TASK_TIMEOUT, "", 0)
        with store.transaction(store.shard_of(task_id)) as tx:
            tx.schedule(task_type, [msg.ScheduleTimer(AT_MS + 200, late),
                                    msg.ScheduleTimer(AT_MS + 100, early),
                                    msg.ScheduleTimer(AT_MS + 900, later)])
        with store.transaction(store.shard_of(task_id)) as tx:
            assert tx.claim_due_timers(AT_MS + 99, 10, [task_type]) == []
            assert tx.claim_due_timers(AT_MS + 200, 10, [task_type]) == [early, late]
            assert tx.claim_due_timers(AT_MS + 200, 1, [task_type]) == [early]
            assert tx.claim_due_timers(AT_MS + 10_000, 10, ["SomeOtherType"]) == []
            for fired in (early, late, later):
                tx.delete_timer(fired)
        with store.transaction(store.shard_of(task_id)) as tx:
            assert tx.claim_due_timers(AT_MS + 10_000, 10, [task_type]) == []

    def test_scheduling_a_timer_again_or_postponing_it_moves_it(
        self, store: EventStore, task_id: str, task_type: str,
    ) -> None:
        beat = timer(task_id, msg.TimerKind.HEARTBEAT_TIMEOUT)
        with store.transaction(store.shard_of(task_id)) as tx:
            tx.schedule(task_type, [msg.ScheduleTimer(AT_MS + 100, beat)])
            tx.schedule(task_type, [msg.ScheduleTimer(AT_MS + 500, beat)])  # a later heartbeat
        with store.transaction(store.shard_of(task_id)) as tx:
            assert tx.claim_due_timers(AT_MS + 499, 10, [task_type]) == []
            assert tx.claim_due_timers(AT_MS + 500, 10, [task_type]) == [beat]
            tx.postpone_timer(beat, AT_MS + 5_000)
        with store.transaction(store.shard_of(task_id)) as tx:
            assert tx.claim_due_timers(AT_MS + 4_999, 10, [task_type]) == []
            assert tx.claim_due_timers(AT_MS + 5_000, 10, [task_type]) == [beat]
            tx.delete_timer(beat)

    def test_the_next_timer_delay_counts_from_the_store_clock(
        self, store: EventStore, task_id: str, task_type: str,
    ) -> None:
        assert store.next_timer_delay_ms([task_type]) is None
        due = timer(task_id, msg.TimerKind.STEP_TIMEOUT)
        with store.transaction(store.shard_of(task_id)) as tx:
            now = tx.database_now_ms()
            tx.schedule(task_type, [msg.ScheduleTimer(now + 60_000, due)])
        delay = store.next_timer_delay_ms([task_type])
        # The store's clock may have moved on since: the delay is at most the full minute.
        assert delay is not None and 50_000 < delay <= 60_000
        with store.transaction(store.shard_of(task_id)) as tx:
            tx.delete_timer(due)
        assert store.next_timer_delay_ms([task_type]) is None

    def test_every_task_is_on_one_of_the_stores_shards_and_each_shard_opens(
        self, store: EventStore, task_id: str,
    ) -> None:
        assert store.shard_of(task_id) in store.shard_names()
        for shard in store.shard_names():
            with store.transaction(shard) as tx:
                assert tx.database_now_ms() > 0
        with pytest.raises(ValueError, match="no shard"), store.transaction("no-such-shard"):
            pass


def task_on(store: EventStore, shard: str) -> str:
    """A new task id that the store places on ``shard``."""
    while True:
        task_id = f"contract-{uuid.uuid4()}"
        if store.shard_of(task_id) == shard:
            return task_id


class ShardedEventStoreContract(EventStoreContract):
    """Stores spread over (at least) two shards: a transaction is on one of them."""

    def test_a_transaction_refuses_a_task_another_shard_holds(
        self, store: EventStore,
    ) -> None:
        first, second = store.shard_names()[:2]
        stranger = task_on(store, second)
        with store.transaction(first) as tx:
            refused = f"is on shard {second}, not on {first}"
            with pytest.raises(WrongShard, match=refused):
                tx.lock_stream(stranger)
            with pytest.raises(WrongShard, match=refused):
                tx.append(stranger, 0, [submitted(stranger)])
            with pytest.raises(WrongShard, match=refused):
                tx.schedule("Contract", [msg.ScheduleTimer(
                    AT_MS, timer(stranger, msg.TimerKind.STEP_RETRY))])

    def test_each_shard_keeps_and_fires_only_its_own_tasks_timers(
        self, store: EventStore, task_type: str,
    ) -> None:
        due = {shard: timer(task_on(store, shard), msg.TimerKind.STEP_TIMEOUT)
               for shard in store.shard_names()}
        for shard, fired in due.items():
            with store.transaction(shard) as tx:
                now = tx.database_now_ms()
                tx.schedule(task_type, [msg.ScheduleTimer(now + 60_000, fired)])
        delay = store.next_timer_delay_ms([task_type])
        assert delay is not None and 50_000 < delay <= 60_000
        for shard, fired in due.items():
            with store.transaction(shard) as tx:
                later = tx.database_now_ms() + 120_000
                assert tx.claim_due_timers(later, 10, [task_type]) == [fired]
                tx.delete_timer(fired)
        assert store.next_timer_delay_ms([task_type]) is None

    def test_a_task_is_loaded_back_from_its_own_shard(self, store: EventStore) -> None:
        tasks = {shard: task_on(store, shard) for shard in store.shard_names()}
        for shard, task_id in tasks.items():
            with store.transaction(shard) as tx:
                tx.append(task_id, 0, [submitted(task_id)])
        for shard, task_id in tasks.items():
            with store.transaction(shard) as tx:
                assert tx.lock_stream(task_id) == 1
                assert tx.load_state(task_id).task_id == task_id

"""The Postgres event store against the real server: append, conflict, append-only, inbox."""

from __future__ import annotations

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from tasksaga.adapters.pg_store import ConcurrencyConflict, PostgresEventStore, prune_older_than
from tests.integration.conftest import completed_step, new_task_id, submitted


def test_appended_events_load_back_in_order(store: PostgresEventStore) -> None:
    task_id = new_task_id()
    with store.transaction() as tx:
        tx.append(task_id, 0, [submitted(task_id), completed_step(task_id, 2)])
    with store.transaction() as tx:
        loaded = tx.load_events(task_id)
        state = tx.load_state(task_id)
    assert [e.version for e in loaded] == [1, 2]
    assert state.version == 2 and state.completion_order == ("CreateArchive",)


def test_a_stale_expected_version_is_a_conflict_and_nothing_is_written(
    store: PostgresEventStore,
) -> None:
    task_id = new_task_id()
    with store.transaction() as tx:
        tx.append(task_id, 0, [submitted(task_id)])
    with pytest.raises(ConcurrencyConflict), store.transaction() as tx:
        tx.claim_message("test", f"{task_id}-m")
        tx.append(task_id, 0, [submitted(task_id)])  # a zombie writer still at version 0
    with store.transaction() as tx:
        assert len(tx.load_events(task_id)) == 1
        # The inbox record rolled back with the failed append: the message can be retried.
        assert tx.claim_message("test", f"{task_id}-m")


def test_the_database_refuses_update_and_delete_of_events(database_url: str,
                                                           store: PostgresEventStore) -> None:
    task_id = new_task_id()
    with store.transaction() as tx:
        tx.append(task_id, 0, [submitted(task_id)])
    with psycopg.connect(database_url) as conn:
        for statement in ("UPDATE events SET event_type = 'x' WHERE stream_id = %s",
                          "DELETE FROM events WHERE stream_id = %s"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement, (task_id,))
            conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("TRUNCATE events")


def test_a_redelivered_message_is_claimed_only_once(store: PostgresEventStore) -> None:
    message_id = new_task_id()
    with store.transaction() as tx:
        assert tx.claim_message("orchestrator", message_id)
    with store.transaction() as tx:
        assert not tx.claim_message("orchestrator", message_id)
        assert tx.claim_message("another-consumer", message_id)


def test_lock_stream_returns_the_version_committed_while_it_waited(
    store: PostgresEventStore,
) -> None:
    """Two concurrent writers of one stream: the second waits for the first's lock and must
    then see the event the first committed (READ COMMITTED: a fresh statement, fresh snapshot)."""
    import threading

    task_id = new_task_id()
    with store.transaction() as tx:
        tx.append(task_id, 0, [submitted(task_id)])
    first_holds_lock = threading.Event()
    release_first = threading.Event()

    def first_writer() -> None:
        with store.transaction() as tx:
            assert tx.lock_stream(task_id) == 1
            first_holds_lock.set()
            release_first.wait(10)
            tx.append(task_id, 1, [completed_step(task_id, 2)])

    thread = threading.Thread(target=first_writer)
    thread.start()
    assert first_holds_lock.wait(10)
    seen: list[int | None] = []

    def second_writer() -> None:
        with store.transaction() as tx:
            seen.append(tx.lock_stream(task_id))  # blocks until the first commits

    second = threading.Thread(target=second_writer)
    second.start()
    second.join(0.5)
    assert second.is_alive(), "the second writer must wait for the stream lock"
    release_first.set()
    thread.join(10)
    second.join(10)
    assert seen == [2], "the version read after the lock must include the first's commit"


def test_the_inbox_and_the_delivery_log_are_pruned_by_age(
    pool: ConnectionPool, store: PostgresEventStore,
) -> None:
    """Rows older than the retention go, in batches; rows inside it stay (the inbox still
    dedupes every message a topic can redeliver)."""
    old, fresh = new_task_id(), new_task_id()
    with pool.connection() as conn:
        conn.execute("INSERT INTO processed_messages (consumer, message_id, processed_at)"
                     " VALUES ('prune-test', %s, now() - interval '9 days'),"
                     " ('prune-test', %s, now() - interval '7 days')", (old, fresh))
        conn.execute("INSERT INTO webhook_deliveries (delivery_id, attempt, task_id, url,"
                     " event_type, outcome, attempted_at) VALUES"
                     " (%s, 1, %s, 'https://x', 'TaskCompleted', 'delivered',"
                     "  now() - interval '31 days'),"
                     " (%s, 1, %s, 'https://x', 'TaskCompleted', 'delivered', now())",
                     (old, old, fresh, fresh))
    assert prune_older_than(pool, "processed_messages", 8 * 86400, batch_size=1) >= 1
    assert prune_older_than(pool, "webhook_deliveries", 30 * 86400) >= 1
    with pool.connection() as conn:
        inbox = conn.execute("SELECT message_id FROM processed_messages WHERE message_id"
                             " = ANY(%s)", ([old, fresh],)).fetchall()
        log = conn.execute("SELECT delivery_id FROM webhook_deliveries WHERE delivery_id"
                           " = ANY(%s)", ([old, fresh],)).fetchall()
    assert inbox == [(fresh,)] and log == [(fresh,)]
    with pytest.raises(ValueError, match="not prunable"):
        prune_older_than(pool, "events", 1)

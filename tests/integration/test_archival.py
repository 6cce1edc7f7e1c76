"""Retention and archival on the real Postgres and MinIO: the partitioned log, archive ->
verify -> detach/drop, restore for audit, rebuild with archives, the archiver's command.

Each test runs in a schema of its own (search_path) and writes to a bucket of its own, so
dropping partitions never touches another test's log. Streams are opened in 1990 (their
envelopes' time), in partitions the test creates: closed and far past any retention age.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from tasksaga.adapters import archive_cli, replay
from tasksaga.adapters.archive import ArchiveNotFound, Archiver
from tasksaga.adapters.archive_format import ArchiveCorrupt, Manifest, object_keys
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.migrations import apply_migrations
from tasksaga.adapters.object_store import MinioObjectStore
from tasksaga.adapters.partitions import (
    PartitionPeriod,
    create_partition,
    ensure_partitions,
    list_partitions,
    partition_name,
)
from tasksaga.adapters.pg_store import ConcurrencyConflict, PostgresEventStore, StreamArchived
from tasksaga.adapters.projections import Projector
from tasksaga.adapters.wire import Envelope
from tasksaga.core import events as ev

DAY = PartitionPeriod.parse("day")
OPENED = datetime(1990, 3, 10, 12, tzinfo=UTC)  # streams open here (partition 1990-03-10)
LATER = datetime(1990, 3, 14, 12, tzinfo=UTC)  # another day's partition


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def envelope(task_id: str, version: int, payload: ev.TaskEvent, at: datetime) -> Envelope:
    return Envelope(payload=payload, message_id=f"{task_id}:{version}", task_id=task_id,
                    correlation_id=task_id, causation_id=None, occurred_at_ms=_ms(at),
                    task_type="CreateZip", version=version)


def run_task(store: PostgresEventStore, opened: datetime, ended: bool = True) -> str:
    """A task opened at ``opened`` with a step that completes days later, then (``ended``)
    completed: all its events in the partition of its opening day."""
    task_id = f"arch-{uuid.uuid4()}"
    events: list[ev.TaskEvent] = [
        ev.TaskSubmitted(task_id, "CreateZip", '{"n": 1}', None, None, _ms(opened), None),
        ev.StepCompleted("UploadFiles", 1, '{"keys": []}', _ms(opened + timedelta(days=2))),
    ]
    if ended:
        events.append(ev.TaskCompleted('{"ok": true}', _ms(opened + timedelta(days=2))))
    for version, event in enumerate(events, start=1):
        with store.transaction() as tx:
            tx.lock_stream(task_id)
            tx.append(task_id, version - 1, [envelope(task_id, version, event,
                                                      opened + timedelta(days=version - 1))])
    return task_id


@pytest.fixture
def schema_store(schema_pool: ConnectionPool, codec: AvroCodec) -> PostgresEventStore:
    """The log of a fresh schema with a week of day partitions in March 1990."""
    with schema_pool.connection() as conn, conn.transaction():
        for day in range(7):
            lower = DAY.floor(OPENED) + timedelta(days=day)
            create_partition(conn, lower, lower + timedelta(days=1))
    return PostgresEventStore(schema_pool, codec)


@pytest.fixture
def objects(stack_env: dict[str, str]) -> MinioObjectStore:
    return MinioObjectStore(stack_env["TASKSAGA_S3_ENDPOINT"], stack_env["TASKSAGA_S3_ACCESS_KEY"],
                            stack_env["TASKSAGA_S3_SECRET_KEY"])


@pytest.fixture
def archiver(schema_pool: ConnectionPool, objects: MinioObjectStore) -> Iterator[Archiver]:
    bucket = f"archive-test-{uuid.uuid4().hex[:10]}"
    objects.ensure_bucket(bucket)
    yield Archiver(schema_pool, objects, bucket)


def partition_of(pool: ConnectionPool, task_id: str) -> set[str]:
    with pool.connection() as conn:
        rows = conn.execute("SELECT DISTINCT tableoid::regclass::text FROM events"
                            " WHERE stream_id = %s", (task_id,)).fetchall()
    return {r[0] for r in rows}


def audit_versions(pool: ConnectionPool, task_id: str) -> list[int]:
    with pool.connection() as conn:
        return [r[0] for r in conn.execute("SELECT version FROM audit_entries WHERE task_id = %s"
                                           " ORDER BY version", (task_id,))]


def status_of(pool: ConnectionPool, task_id: str) -> str | None:
    with pool.connection() as conn:
        row = conn.execute("SELECT status FROM task_status WHERE task_id = %s",
                           (task_id,)).fetchone()
    return None if row is None else str(row[0])


def test_partitions_are_created_ahead_and_a_stream_stays_in_its_opening_partition(
        schema_store: PostgresEventStore, schema_pool: ConnectionPool) -> None:
    with schema_pool.connection() as conn, conn.transaction():
        names = [p.name for p in list_partitions(conn)]
    month = PartitionPeriod.parse("month")
    this_month = month.floor(datetime.now(UTC))
    # The migration made this month's partition and the next; the fixture a week of 1990.
    assert names == [f"events_p199003{day:02d}t000000" for day in range(10, 17)] + [
        partition_name(this_month), partition_name(month.after(this_month))]
    task_id = run_task(schema_store, OPENED)  # events recorded over three days
    assert partition_of(schema_pool, task_id) == {"events_p19900310t000000"}
    with schema_store.transaction() as tx:  # the stream version, read pruned to its partition
        assert tx.lock_stream(task_id) == 3
        assert [e.version for e in tx.load_events(task_id)] == [1, 2, 3]

    # Ahead of a later "now", after the last partition; a range whose streams the default
    # partition already holds is left to it (a partition may not overlap its rows).
    later = datetime(2031, 5, 31, 12, tzinfo=UTC)
    with schema_store.transaction() as tx:
        stray = f"stray-{uuid.uuid4()}"
        tx.append(stray, 0, [envelope(stray, 1, ev.TaskSubmitted(
            stray, "CreateZip", "{}", None, None, _ms(later + timedelta(days=1)), None),
            later + timedelta(days=1))])
    with schema_pool.connection() as conn:
        done = ensure_partitions(conn, DAY, timedelta(days=2), now=later)
        assert done.created == ["events_p20310531t000000", "events_p20310602t000000"]
        june = datetime(2031, 6, 1, tzinfo=UTC)
        assert done.skipped == [(june, june + timedelta(days=1))]
        assert ensure_partitions(conn, DAY, timedelta(days=2), now=later).created == []
    assert partition_of(schema_pool, stray) == {"events_default"}


def test_stream_version_stays_unique_across_partitions(
        schema_store: PostgresEventStore, schema_pool: ConnectionPool) -> None:
    task_id = run_task(schema_store, OPENED, ended=False)
    submitted_again = envelope(task_id, 1, ev.TaskSubmitted(
        task_id, "CreateZip", "{}", None, None, _ms(LATER), None), LATER)
    with pytest.raises(ConcurrencyConflict), schema_store.transaction() as tx:
        tx.append(task_id, 0, [submitted_again])  # a second opening, another day: refused
    late = envelope(task_id, 2, ev.TaskCompleted("{}", _ms(LATER)), LATER)
    with pytest.raises(ConcurrencyConflict), schema_store.transaction() as tx:
        tx.append(task_id, 1, [late])  # version 2 exists, in the stream's partition
    assert partition_of(schema_pool, task_id) == {"events_p19900310t000000"}


REFUSED = ["UPDATE events SET event_type = 'X'", "DELETE FROM events", "TRUNCATE events",
           "UPDATE events_p19900310t000000 SET event_type = 'X'",
           "DELETE FROM events_p19900310t000000", "TRUNCATE events_p19900310t000000",
           "TRUNCATE events_default"]


def test_update_delete_and_truncate_stay_refused_on_the_partitioned_log(
        schema_store: PostgresEventStore, schema_url: str) -> None:
    run_task(schema_store, OPENED)
    with psycopg.connect(schema_url, autocommit=True) as conn:
        for statement in REFUSED:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (3,)


def test_archive_verifies_then_drops_the_partition_and_keeps_one_with_a_running_task(
        schema_store: PostgresEventStore, schema_pool: ConnectionPool, codec: AvroCodec,
        archiver: Archiver, objects: MinioObjectStore) -> None:
    ended = [run_task(schema_store, OPENED) for _ in range(3)]
    running = run_task(schema_store, LATER, ended=False)
    Projector(schema_pool, codec).catch_up_fully()
    assert audit_versions(schema_pool, ended[0]) == [1, 2, 3]

    report = archiver.run(timedelta(days=30))

    assert [a.partition for a in report.archived] == ["events_p19900310t000000"]
    assert (report.archived[0].tasks, report.archived[0].events) == (3, 9)
    assert report.held == {"events_p19900314t000000":
                           f"1 of 1 tasks not ended (or waiting for an operator): {running}"}
    assert "events_p19900311t000000" in report.dropped_empty
    with schema_pool.connection() as conn:
        assert conn.execute("SELECT to_regclass('events_p19900310t000000')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM events WHERE stream_id = ANY(%s)",
                            (ended,)).fetchone() == (0,)
    assert partition_of(schema_pool, running) == {"events_p19900314t000000"}
    # The task keeps its status, loses its audit rows, and says where its history went.
    assert status_of(schema_pool, ended[0]) == "Completed"
    assert audit_versions(schema_pool, ended[0]) == []
    archive = archiver.archive_of(ended[0])
    events_key, checksum_key, manifest_key = object_keys("events", "events_p19900310t000000")
    assert archive is not None and archive.location == f"s3://{archiver.bucket}/{events_key}"
    manifest = Manifest.from_json(b"".join(objects.open_stream(archiver.bucket, manifest_key)))
    assert {t: e.events for t, e in manifest.tasks.items()} == dict.fromkeys(ended, 3)
    checksum = b"".join(objects.open_stream(archiver.bucket, checksum_key)).decode()
    assert checksum == f"{manifest.sha256}  events.avro\n"
    assert list(archiver.verify_all()) == [("events_p19900310t000000", None)]
    # A stray message for an archived task is refused with the reason (a dead letter), never
    # taken for a new task.
    with pytest.raises(StreamArchived, match="is archived"), schema_store.transaction() as tx:
        tx.lock_stream(ended[0])


def test_a_changed_archive_fails_verification_and_is_not_restored(
        schema_store: PostgresEventStore, schema_pool: ConnectionPool, codec: AvroCodec,
        archiver: Archiver, objects: MinioObjectStore) -> None:
    task_id = run_task(schema_store, OPENED)
    Projector(schema_pool, codec).catch_up_fully()
    archiver.run(timedelta(days=30))
    events_key, _, _ = object_keys("events", "events_p19900310t000000")
    original = b"".join(objects.open_stream(archiver.bucket, events_key))
    tampered = original[:-40] + bytes(b ^ 1 for b in original[-40:])
    objects.put_stream(archiver.bucket, events_key, BytesIO(tampered))
    with pytest.raises(ArchiveCorrupt):
        archiver.restore(task_id)
    assert [p for p, problem in archiver.verify_all() if problem] == ["events_p19900310t000000"]
    with schema_pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM restored_events").fetchone() == (0,)


def test_restore_brings_the_audit_back_and_a_rebuild_includes_archives_on_request(
        schema_store: PostgresEventStore, schema_pool: ConnectionPool, codec: AvroCodec,
        archiver: Archiver, objects: MinioObjectStore, schema_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    restored, other = run_task(schema_store, OPENED), run_task(schema_store, OPENED)
    projector = Projector(schema_pool, codec)
    projector.catch_up_fully()
    with schema_pool.connection() as conn:
        before = conn.execute("SELECT * FROM audit_entries WHERE task_id = %s ORDER BY version",
                              (restored,)).fetchall()
    archiver.run(timedelta(days=30))
    with pytest.raises(ArchiveNotFound):
        archiver.restore("no-such-task")

    assert archiver.restore(restored) == 3
    assert archiver.restore(restored) == 3  # again: nothing added
    projector.catch_up_fully()
    with schema_pool.connection() as conn:
        after = conn.execute("SELECT * FROM audit_entries WHERE task_id = %s ORDER BY version",
                             (restored,)).fetchall()
    assert after == before
    archive = archiver.archive_of(restored)
    assert archive is not None and archive.restored_at is not None

    # A rebuild without archives: the restored task from restored_events, the other gone
    # from the projections (its status is the summary in archived_tasks).
    projector.reset()
    projector.catch_up_fully()
    assert audit_versions(schema_pool, restored) == [1, 2, 3]
    assert status_of(schema_pool, other) is None
    # Replay of one task reads its archive; a rebuild with archives brings every task back.
    with_archives = lambda pool: Archiver(pool, objects, archiver.bucket)  # noqa: E731
    assert replay.show_task(schema_url, codec, other, with_archives) == 0
    assert "TaskCompleted" in capsys.readouterr().out
    count, _ = replay.rebuild(schema_url, codec, with_archives)
    assert count == 6
    assert status_of(schema_pool, other) == "Completed"
    assert audit_versions(schema_pool, other) == [1, 2, 3]


def test_the_archive_command_archives_and_prunes_the_inbox_and_delivery_log(
        schema_store: PostgresEventStore, schema_pool: ConnectionPool, codec: AvroCodec,
        schema_url: str, archiver: Archiver, objects: MinioObjectStore,
        stack_env: dict[str, str],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    task_id = run_task(schema_store, OPENED)
    Projector(schema_pool, codec).catch_up_fully()
    with schema_pool.connection() as conn:
        conn.execute("INSERT INTO processed_messages (consumer, message_id, processed_at)"
                     " VALUES ('c', 'old', now() - interval '9 days'), ('c', 'new', now())")
        conn.execute("INSERT INTO webhook_deliveries (delivery_id, attempt, task_id, url,"
                     " event_type, outcome, attempted_at) VALUES ('d', 1, 't', 'http://x',"
                     " 'TaskCompleted', 'delivered', now() - interval '31 days')")
    for name, value in stack_env.items():
        monkeypatch.setenv(name, value)
    argv = ["--database-url", schema_url, "--bucket", archiver.bucket]
    assert archive_cli.main([*argv, "run", "--retention-days", "30"]) == 0
    printed = capsys.readouterr().out
    assert "archived events_p19900310t000000: 1 tasks, 3 events" in printed
    assert "pruned 1 processed_messages rows" in printed
    assert "pruned 1 webhook_deliveries rows" in printed
    assert archive_cli.main([*argv, "restore", task_id]) == 0
    assert archive_cli.main([*argv, "verify"]) == 0
    assert "events_p19900310t000000: ok" in capsys.readouterr().out
    with schema_pool.connection() as conn:
        assert conn.execute("SELECT message_id FROM processed_messages").fetchall() == [("new",)]
    manifest_key = object_keys("events", "events_p19900310t000000")[2]
    manifest = json.loads(b"".join(objects.open_stream(archiver.bucket, manifest_key)))
    assert manifest["event_count"] == 3


def test_the_migration_moves_an_existing_log_into_monthly_partitions(
        database_url: str, codec: AvroCodec, tmp_path: Path) -> None:
    """A log written before 018 keeps every row, key and guarantee, and its streams go on."""
    from tasksaga.adapters.migrations import DEFAULT_MIGRATIONS_DIR
    from tests.integration.conftest import completed_step, submitted

    schema = f"migrate_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{database_url}?options={quote(f'-csearch_path={schema}')}"
    try:
        for path in sorted(DEFAULT_MIGRATIONS_DIR.glob("*.sql")):
            if path.name < "018":
                shutil.copy(path, tmp_path)
        apply_migrations(url, tmp_path)
        task_id = f"migrated-{uuid.uuid4()}"
        with psycopg.connect(url, autocommit=True) as conn:
            for envelope_, recorded in ((submitted(task_id), "2026-10-30"),
                                        (completed_step(task_id, 2), "2026-11-02")):
                conn.execute("INSERT INTO events (stream_id, version, event_type, message_id,"
                             " payload, recorded_at) VALUES (%s, %s, 'X', %s, %s, %s)",
                             (task_id, envelope_.version, envelope_.message_id,
                              codec.encode(envelope_), recorded))
        later = sorted(p.name for p in DEFAULT_MIGRATIONS_DIR.glob("*.sql") if p.name >= "018")
        assert apply_migrations(url) == later  # 018 and 019 move the log, the rest follow
        assert later[:2] == ["018_partitioned_events.sql", "019_event_archives.sql"]
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute("SELECT tableoid::regclass::text, position, version FROM events"
                                " ORDER BY position").fetchall()
            assert rows == [("events_p20261001t000000", 1, 1), ("events_p20261001t000000", 2, 2)]
        with ConnectionPool(url, min_size=1, max_size=1) as pool:
            store = PostgresEventStore(pool, codec)
            with store.transaction() as tx:
                assert tx.lock_stream(task_id) == 2
                tx.append(task_id, 2, [completed_step(task_id, 3, "PublishManifest")])
            with pytest.raises(ConcurrencyConflict), store.transaction() as tx:
                tx.append(task_id, 2, [completed_step(task_id, 3, "Again")])
        assert partition_of_url(url, task_id) == {"events_p20261001t000000"}
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def partition_of_url(url: str, task_id: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tableoid::regclass::text, position FROM events"
                            " WHERE stream_id = %s", (task_id,)).fetchall()
    assert [r[1] for r in rows] == [1, 2, 3]  # the position sequence went on
    return {r[0] for r in rows}


def test_one_archiver_runs_at_a_time(schema_store: PostgresEventStore, schema_url: str,
                                     codec: AvroCodec, schema_pool: ConnectionPool,
                                     archiver: Archiver) -> None:
    run_task(schema_store, OPENED)
    Projector(schema_pool, codec).catch_up_fully()
    with psycopg.connect(schema_url, autocommit=True) as other:
        # Another archiver's pass holds the log's lock.
        other.execute("SELECT pg_advisory_lock(7201504, hashtext(current_schema()))")
        report = archiver.run(timedelta(days=30))
        assert report.busy and report.lines() == ["another archiver is running; nothing done"]
    assert [a.partition for a in archiver.run(timedelta(days=30)).archived] == [
        "events_p19900310t000000"]

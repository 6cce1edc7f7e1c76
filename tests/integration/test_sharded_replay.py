"""The replay tooling over two Postgres shards on two real clusters (shard_support.py): with
TASKSAGA_SHARDS set, a rebuild rebuilds both shards' projections, a task's stream is read on
its own shard, and archives are read through the first shard, where the archiver keeps them;
tasksaga-migrate migrates every shard."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from typing import Any, cast

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from tasksaga.adapters import migrations, replay
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_shards import ShardedEventStore
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.core import messages as msg
from tasksaga.core.registry import TaskRegistry
from tasksaga.core.shards import ShardConfig
from tasksaga.orchestrator.processor import Orchestrator
from tests.integration.shard_support import shard_urls, two_shard_store
from tests.port_contracts.event_store import task_on
from tests.unit.sagas import Req, linear

pytestmark = pytest.mark.integration


@pytest.fixture
def store(database_url: str, second_pg_url: str,
          codec: AvroCodec) -> Iterator[ShardedEventStore]:
    with two_shard_store(database_url, second_pg_url, codec) as store:
        yield store


def _shards_env(store: ShardedEventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """TASKSAGA_SHARDS as the services have it; TASKSAGA_DATABASE_URL names another database
    (the stack's), so a tool that read it alone would see neither shard's tasks."""
    monkeypatch.setenv("TASKSAGA_SHARDS", ";".join(
        f"{name}={store.pool(name).conninfo}" for name in store.shard_names()))
    monkeypatch.delenv("TASKSAGA_SHARD_BUCKETS", raising=False)


def _submit(store: ShardedEventStore, codec: AvroCodec) -> dict[str, str]:
    """One task on each shard, submitted through the orchestrator (events, no projection)."""
    task = linear(1)
    task.name = f"Replayed{uuid.uuid4().hex[:6]}"
    orchestrator = Orchestrator(TaskRegistry([task]), store, codec, Topics("replay-test"),
                                lambda _tx: 1_700_000_000_000, lambda: 0.0)
    tasks = {shard: task_on(store, shard) for shard in store.shard_names()}
    orchestrator.handle_batch([Envelope(
        payload=msg.SubmitTask(t, task.name, Req().model_dump_json(), None, None, 0),
        message_id=str(uuid.uuid4()), task_id=t, correlation_id=t, causation_id=None,
        occurred_at_ms=0) for t in tasks.values()])
    return tasks


def _projected(store: ShardedEventStore, shard: str) -> set[str]:
    with store.pool(shard).connection() as conn:
        return {r[0] for r in conn.execute("SELECT task_id FROM task_status").fetchall()}


def test_a_rebuild_from_the_shards_setting_rebuilds_every_shards_projections(
    store: ShardedEventStore, codec: AvroCodec, monkeypatch: pytest.MonkeyPatch,
) -> None:
    tasks = _submit(store, codec)
    _shards_env(store, monkeypatch)
    target = replay.target_from_env(None)
    assert isinstance(target, ShardConfig) and list(target.map.shards) == ["alpha", "beta"]
    done = replay.rebuild_shards(target, codec)
    assert [(d.shard, d.events > 0) for d in done] == [("alpha", True), ("beta", True)]
    for shard, task_id in tasks.items():
        assert _projected(store, shard) == {task_id}  # each shard's own tasks, from its log
    # --database-url still means that database alone.
    assert replay.target_from_env("postgresql://elsewhere/db") == "postgresql://elsewhere/db"


class _RecordingArchiver:
    """Records the database the tool gave the archiver (its tables are on the first shard)."""

    def __init__(self, pool: ConnectionPool, seen: list[tuple[str, str]]) -> None:
        self._pool, self._seen = pool, seen

    def archived_events(self, task_id: str) -> list[Any]:
        self._seen.append(("archived_events", str(self._pool.conninfo)))
        return []

    def restore_all(self) -> int:
        self._seen.append(("restore_all", str(self._pool.conninfo)))
        return 0


def test_a_tasks_stream_is_read_on_its_shard_and_archives_through_the_first_shard(
    store: ShardedEventStore, codec: AvroCodec, monkeypatch: pytest.MonkeyPatch,
) -> None:
    tasks = _submit(store, codec)
    _shards_env(store, monkeypatch)
    target = replay.target_from_env(None)
    assert target is not None
    beta_stream = replay.load_stream(target, codec, tasks["beta"])
    assert beta_stream and {e.task_id for e in beta_stream} == {tasks["beta"]}
    assert [e.version for e in beta_stream] == list(range(1, len(beta_stream) + 1))
    assert replay.show_task(target, codec, tasks["beta"]) == 0

    seen: list[tuple[str, str]] = []
    archiver = cast(Any, lambda pool: _RecordingArchiver(pool, seen))
    gone = task_on(store, "beta")  # a beta task whose log rows were archived away
    assert replay.load_stream(target, codec, gone, archiver) == []
    replay.rebuild_shards(target, codec, archiver)
    home = store.pool("alpha").conninfo
    assert seen == [("archived_events", home), ("restore_all", home)]


def test_the_migrate_tool_migrates_every_shard_of_the_shards_setting(
    database_url: str, second_pg_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with shard_urls({"alpha": database_url, "beta": second_pg_url}) as urls:
        monkeypatch.setenv("TASKSAGA_SHARDS", ";".join(f"{n}={u}" for n, u in urls.items()))
        monkeypatch.delenv("TASKSAGA_SHARD_BUCKETS", raising=False)
        monkeypatch.setattr(sys, "argv", ["tasksaga-migrate"])
        assert migrations.main() == 0
        for url in urls.values():
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT to_regclass('streams')").fetchone() != (None,)
    out = capsys.readouterr().out
    assert "shard alpha: applied: " in out and "shard beta: applied: " in out


def test_the_replay_cli_rebuilds_every_shard_and_names_each(
    store: ShardedEventStore, codec: AvroCodec, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tasks = _submit(store, codec)
    _shards_env(store, monkeypatch)
    monkeypatch.setattr(replay, "payload_cipher_from_env", lambda: codec.cipher)
    monkeypatch.setattr(sys, "argv", ["tasksaga-replay", "--rebuild"])
    assert replay.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" from ")[0] for line in lines] == [
        "rebuilt projections of shard alpha", "rebuilt projections of shard beta"]
    for shard, task_id in tasks.items():
        assert _projected(store, shard) == {task_id}

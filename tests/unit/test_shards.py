"""The bucket map: a stable bucket per task id, every bucket on a configured shard."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tasksaga.core.shards import (
    BUCKETS,
    DEFAULT_SHARD,
    ShardConfigError,
    ShardMap,
    bucket_of,
    parse_shards,
)
from tasksaga.orchestrator.settings import OrchestratorSettings


def test_the_bucket_is_a_fixed_crc32_not_the_process_hash() -> None:
    # Pinned values: a change here would move every existing task to another shard.
    assert bucket_of("task-1") == 0xC9DFC1EF % BUCKETS == 239
    assert bucket_of("") == 0


@given(st.text())
def test_every_task_id_has_one_bucket_in_range(task_id: str) -> None:
    assert 0 <= bucket_of(task_id) < BUCKETS
    assert bucket_of(task_id) == bucket_of(task_id)


@given(st.integers(min_value=1, max_value=16), st.text())
def test_an_even_map_places_every_task_on_a_configured_shard(count: int, task_id: str) -> None:
    names = [f"s{i}" for i in range(count)]
    shard_map = ShardMap.even(names)
    assert shard_map.shard_of(task_id) in names
    assert sum(len(shard_map.buckets_of(n)) for n in names) == BUCKETS
    sizes = [len(shard_map.buckets_of(n)) for n in names]
    assert max(sizes) - min(sizes) <= 1


def test_without_shards_one_default_shard_at_the_database_url_holds_everything() -> None:
    config = parse_shards(None, None, "postgresql://db/one")
    assert config.urls == {DEFAULT_SHARD: "postgresql://db/one"}
    assert config.map.shard_of("anything") == DEFAULT_SHARD == config.map.home


def test_shards_and_an_explicit_assignment_are_read_from_the_settings() -> None:
    config = parse_shards("a=postgresql://h1/db?sslmode=require; b=postgresql://h2/db",
                          "a:0-99,200-255; b:100-199", "ignored")
    assert config.urls == {"a": "postgresql://h1/db?sslmode=require", "b": "postgresql://h2/db"}
    assert config.map.home == "a"
    assert config.map.buckets_of("b") == list(range(100, 200))


def test_a_bucket_without_a_shard_is_refused_naming_the_buckets() -> None:
    with pytest.raises(ShardConfigError, match=r"buckets 100-199,255 have no shard"):
        parse_shards("a=postgresql://h1/db b=postgresql://h2/db", "a:0-99; b:200-254", "")


def test_an_unknown_or_twice_assigned_bucket_is_refused() -> None:
    with pytest.raises(ShardConfigError, match="unknown shard 'c'"):
        parse_shards("a=postgresql://h1/db", "c:0-255", "")
    with pytest.raises(ShardConfigError, match="bucket 10 is assigned twice"):
        parse_shards("a=x b=y", "a:0-10; b:10-255", "")
    with pytest.raises(ShardConfigError, match="must lie in 0-255"):
        parse_shards("a=x", "a:0-256", "")


def test_malformed_shard_settings_are_refused_with_the_expected_form() -> None:
    with pytest.raises(ShardConfigError, match="is not name=postgresql"):
        parse_shards("postgresql://h1/db", None, "")
    with pytest.raises(ShardConfigError, match="names shard 'a' twice"):
        parse_shards("a=x a=y", None, "")
    with pytest.raises(ShardConfigError, match="TASKSAGA_SHARDS is not"):
        parse_shards("", "a:0-255", "")
    with pytest.raises(ShardConfigError, match="is not valid"):
        ShardMap.even(["Bad Name"])
    with pytest.raises(ShardConfigError, match="unknown shards x"):
        ShardMap(("a",), ("x",) * BUCKETS)


def test_a_service_refuses_bad_shard_settings_at_start_naming_the_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKSAGA_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("TASKSAGA_DATABASE_URL", "postgresql://h1/db")
    assert OrchestratorSettings().shard_config().map == ShardMap.single()
    monkeypatch.setenv("TASKSAGA_SHARDS", "a=postgresql://h1/db;b=postgresql://h2/db")
    monkeypatch.setenv("TASKSAGA_SHARD_BUCKETS", "a:0-127")
    with pytest.raises(ValidationError, match="buckets 128-255 have no shard"):
        OrchestratorSettings()
    monkeypatch.setenv("TASKSAGA_SHARD_BUCKETS", "a:0-127;b:128-255")
    assert OrchestratorSettings().shard_config().map.buckets_of("b") == list(range(128, 256))

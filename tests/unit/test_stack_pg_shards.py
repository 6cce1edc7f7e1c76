"""tools/stack --pg-shards: the further clusters' ports and folders, and the TASKSAGA_SHARDS
that `tools/stack env` prints for them (read back by the services' own parser)."""

from __future__ import annotations

from pathlib import Path

import pytest
from stacklib.cli import parse_args
from stacklib.common import Settings, StackError, env
from stacklib.ops import services

from tasksaga.core.shards import parse_shards


def test_a_second_cluster_listens_on_the_next_port_with_its_own_data(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path).with_pg_shards(2)
    postgres = {s.name: s for s in services(settings) if s.name.startswith("postgres")}
    assert {name: server.port for name, server in postgres.items()} == {
        "postgres": 15432, "postgres-2": 15433}
    assert postgres["postgres-2"].marker == str(tmp_path / "pg-2" / "data")
    assert [s.name for s in services(Settings(stack_dir=tmp_path))].count("postgres-2") == 0


def test_env_names_every_cluster_as_a_shard_the_services_accept(tmp_path: Path) -> None:
    exported = env(Settings(stack_dir=tmp_path, pg_shards=2))
    config = parse_shards(exported["TASKSAGA_SHARDS"], None, exported["TASKSAGA_DATABASE_URL"])
    assert config.map.shards == ("pg1", "pg2")
    assert config.urls["pg1"] == exported["TASKSAGA_DATABASE_URL"]
    assert config.urls["pg2"].endswith("@127.0.0.1:15433/tasksaga")
    assert "TASKSAGA_SHARDS" not in env(Settings(stack_dir=tmp_path))


def test_an_unsupported_number_of_clusters_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="1 to 4 PostgreSQL clusters"):
        Settings(stack_dir=tmp_path).with_pg_shards(5)
    with pytest.raises(SystemExit):
        parse_args(["up", "--pg-shards", "0"])
    assert parse_args(["up", "--pg-shards", "2"]).pg_shards == 2

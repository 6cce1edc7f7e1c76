"""tools/stack's second PostgreSQL cluster (--pg-shards 2) on a throwaway stack folder and
ports, so the shared stack is left alone: it starts, serves the app's role and database, and
starting it again leaves the running server alone."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from stacklib.common import Settings, pg_url
from stacklib.ops import stop_one
from stacklib.postgres import PostgresShard

pytestmark = pytest.mark.integration


def test_a_second_cluster_starts_once_and_serves_the_app_database(tmp_path: Path) -> None:
    # Ports below Linux's ephemeral range (32768+), away from the shared stack's.
    settings = Settings(stack_dir=tmp_path / "stack", pg_port=21632, pg_shards=2)
    shard = PostgresShard(settings, 2)
    try:
        shard.start()
        shard.wait_ready(60)
        pid = shard.pid()
        assert pid is not None
        shard.wait_ready(60)  # provisioning again (as every `up` does) changes nothing
        assert shard.pid() == pid
        with psycopg.connect(pg_url(settings, 2), connect_timeout=5) as conn:
            row = conn.execute("SELECT current_database(), current_setting('port')").fetchone()
        assert row == ("tasksaga", "21633")
    finally:
        stop_one(shard)
    assert shard.pid() is None

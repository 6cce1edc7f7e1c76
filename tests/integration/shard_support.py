"""Two event store shards for tests, on two real PostgreSQL clusters: the stack's, and a
throwaway second cluster (tools/stack's PostgresShard, its own folder and port) started once
per session. Each shard is a fresh schema (every migration applied) of its cluster's database,
dropped afterwards: a schema is a whole tasksaga database to the store."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
from stacklib.common import Settings, pg_url
from stacklib.ops import stop_one
from stacklib.postgres import PostgresShard

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_shards import ShardedEventStore, migrate_shards, open_shard_pools
from tasksaga.core.shards import ShardConfig, ShardMap

SHARDS = ("alpha", "beta")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def second_cluster(stack_dir: Path) -> Iterator[str]:
    """A second PostgreSQL cluster (as `tools/stack up --pg-shards 2` starts) on a free port
    (each user of one, the e2e module and the integration session, has its own); its URL."""
    settings = Settings(stack_dir=stack_dir, pg_port=_free_port() - 1, pg_shards=2)
    cluster = PostgresShard(settings, 2)
    try:
        cluster.start()
        cluster.wait_ready(60)
        yield pg_url(settings, 2)
    finally:
        stop_one(cluster)


@contextmanager
def shard_urls(cluster_urls: dict[str, str]) -> Iterator[dict[str, str]]:
    """A fresh schema on each shard's cluster; the URLs that select it."""
    schemas = {name: f"shard_test_{name}_{uuid.uuid4().hex[:10]}" for name in cluster_urls}
    for name, url in cluster_urls.items():
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schemas[name]}")
    try:
        yield {name: f"{url}{'&' if '?' in url else '?'}"
                     f"options={quote(f'-csearch_path={schemas[name]}')}"
               for name, url in cluster_urls.items()}
    finally:
        for name, url in cluster_urls.items():
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schemas[name]} CASCADE")


@contextmanager
def two_shard_store(database_url: str, second_url: str,
                    codec: AvroCodec) -> Iterator[ShardedEventStore]:
    """Shard alpha on the stack's cluster, beta on the second one."""
    with shard_urls({"alpha": database_url, "beta": second_url}) as urls:
        config = ShardConfig(urls, ShardMap.even(SHARDS))
        migrate_shards(config)
        pools = open_shard_pools(config, 4, "shard-tests")
        try:
            yield ShardedEventStore(config.map, pools, codec)
        finally:
            for pool in pools.values():
                pool.close()

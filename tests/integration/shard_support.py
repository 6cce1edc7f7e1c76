"""Two event store shards for tests: each a fresh schema (every migration applied) of the
stack's database, dropped afterwards. A schema is a whole tasksaga database to the store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_shards import ShardedEventStore, migrate_shards, open_shard_pools
from tasksaga.core.shards import ShardConfig, ShardMap

SHARDS = ("alpha", "beta")


@contextmanager
def shard_urls(database_url: str, names: tuple[str, ...] = SHARDS) -> Iterator[dict[str, str]]:
    schemas = {name: f"shard_test_{name}_{uuid.uuid4().hex[:10]}" for name in names}
    separator = "&" if "?" in database_url else "?"
    with psycopg.connect(database_url, autocommit=True) as conn:
        for schema in schemas.values():
            conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield {name: f"{database_url}{separator}options={quote(f'-csearch_path={schema}')}"
               for name, schema in schemas.items()}
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for schema in schemas.values():
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def two_shard_store(database_url: str, codec: AvroCodec) -> Iterator[ShardedEventStore]:
    with shard_urls(database_url) as urls:
        config = ShardConfig(urls, ShardMap.even(SHARDS))
        migrate_shards(config)
        pools = open_shard_pools(config, 4, "shard-tests")
        try:
            yield ShardedEventStore(config.map, pools, codec)
        finally:
            for pool in pools.values():
                pool.close()

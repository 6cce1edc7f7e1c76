"""The event store spread over several Postgres clusters (core/shards.py maps a task to one).

Each shard is a whole tasksaga database (every migration applied): its tasks' streams, inbox
claims, outbox, timers and projections. A transaction runs on one shard; the orchestrator
opens it on the shard of the tasks it handles, the timer loop and the relays visit every shard.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.migrations import apply_migrations
from tasksaga.adapters.pg_store import open_pool
from tasksaga.adapters.pg_transaction import DATABASE_NOW_MS, StoreTransaction
from tasksaga.core.shards import ShardConfig, ShardMap


class ShardedEventStore:
    """The EventStore port over one connection pool per shard."""

    def __init__(self, shards: ShardMap, pools: Mapping[str, ConnectionPool],
                 codec: AvroCodec, notify_outbox: bool = True) -> None:
        missing = sorted(set(shards.shards) - set(pools))
        if missing:
            raise ValueError(f"no connection pool for shards {', '.join(missing)}")
        self.shards = shards
        self._pools = dict(pools)
        self._codec = codec
        # False when an OutboxPublisher sends what commits: no NOTIFY wakes the relay then.
        self._notify_outbox = notify_outbox

    def shard_names(self) -> Sequence[str]:
        return self.shards.shards

    def shard_of(self, task_id: str) -> str:
        return self.shards.shard_of(task_id)

    def pool(self, shard: str) -> ConnectionPool:
        return self._pools[shard]

    @contextmanager
    def transaction(self, shard: str | None = None) -> Iterator[StoreTransaction]:
        name = self.shards.home if shard is None else shard
        if name not in self._pools:
            raise ValueError(f"no shard {name!r}; shards: {', '.join(self.shards.shards)}")
        with self._pools[name].connection() as conn, conn.transaction():
            tx = StoreTransaction(conn, self._codec, self.shards, name, self._notify_outbox)
            yield tx
            tx.flush()  # what it kept back, before the commit

    def next_timer_delay_ms(self, task_types: Sequence[str]) -> int | None:
        """The soonest of every shard's next timer, each by its own database's clock."""
        delays: list[int] = []
        for name in self.shards.shards:
            with self._pools[name].connection() as conn:
                row = conn.execute(f"SELECT min(fire_at_ms) - {DATABASE_NOW_MS} FROM timers"
                                   " WHERE task_type = ANY(%s)", (list(task_types),)).fetchone()
            if row is not None and row[0] is not None:
                delays.append(int(row[0]))
        return min(delays) if delays else None


def migrate_shards(config: ShardConfig) -> None:
    """Apply the migrations on every shard (each holds the whole schema)."""
    for name in config.map.shards:
        apply_migrations(config.urls[name])


def open_shard_pools(config: ShardConfig, max_size: int, name: str
                     ) -> dict[str, ConnectionPool]:
    """One pool per shard; on a failure, the pools already opened are closed."""
    pools: dict[str, ConnectionPool] = {}
    try:
        for shard in config.map.shards:
            label = name if len(config.map.shards) == 1 else f"{name}-{shard}"
            pools[shard] = open_pool(config.urls[shard], max_size, label)
    except BaseException:
        for pool in pools.values():
            pool.close()
        raise
    return pools

"""The Postgres event store: append with expected version, inbox, outbox and timers in one
transaction per processed message."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from psycopg_pool import ConnectionPool

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.pg_transaction import (
    DATABASE_NOW_MS,
    EVENTS_CHANNEL,
    OUTBOX_CHANNEL,
    StoreTransaction,
    StreamArchived,
)
from tasksaga.core.ports import ConcurrencyConflict, OutboxRecord
from tasksaga.core.shards import DEFAULT_SHARD

# The port's types, defined with it in the core; importable from here as they always were.
__all__ = ["EVENTS_CHANNEL", "OUTBOX_CHANNEL", "PRUNABLE", "ConcurrencyConflict",
           "OutboxRecord", "PostgresEventStore", "StoreTransaction", "StreamArchived",
           "open_pool", "prune_older_than"]


class PostgresEventStore:
    """One database holding every task (a single shard; adapters/pg_shards.py spreads the
    store over several)."""

    def __init__(self, pool: ConnectionPool, codec: AvroCodec) -> None:
        self._pool = pool
        self._codec = codec

    def shard_names(self) -> Sequence[str]:
        return (DEFAULT_SHARD,)

    def shard_of(self, task_id: str) -> str:
        return DEFAULT_SHARD

    @contextmanager
    def transaction(self, shard: str | None = None) -> Iterator[StoreTransaction]:
        if shard not in (None, DEFAULT_SHARD):
            raise ValueError(f"no shard {shard!r}: this store is the one shard {DEFAULT_SHARD}")
        with self._pool.connection() as conn, conn.transaction():
            tx = StoreTransaction(conn, self._codec)
            yield tx
            tx.flush()  # what it kept back, before the commit

    def next_timer_delay_ms(self, task_types: Sequence[str]) -> int | None:
        """Milliseconds until the next timer of these task types is due (by the database's
        clock, the one timers are scheduled and fired with), None when there is none."""
        with self._pool.connection() as conn:
            row = conn.execute(f"SELECT min(fire_at_ms) - {DATABASE_NOW_MS} FROM timers"
                               " WHERE task_type = ANY(%s)", (list(task_types),)).fetchone()
        return None if row is None or row[0] is None else int(row[0])


# Tables pruned by age, and the column their age is read from (indexes in 008).
PRUNABLE = {"processed_messages": "processed_at", "webhook_deliveries": "attempted_at"}


def prune_older_than(
    pool: ConnectionPool, table: str, retention_s: float, batch_size: int = 5000,
) -> int:
    """Delete the rows of ``table`` older than ``retention_s``, in short transactions of at
    most ``batch_size`` rows (no long lock, no long transaction); returns how many."""
    if table not in PRUNABLE:
        raise ValueError(f"{table!r} is not prunable; prunable tables: {', '.join(PRUNABLE)}")
    if retention_s <= 0:
        raise ValueError(f"the retention of {table} must be positive, got {retention_s} s")
    column = PRUNABLE[table]
    total = 0
    while True:
        with pool.connection() as conn, conn.transaction():
            deleted = conn.execute(
                f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table}"
                f" WHERE {column} < now() - make_interval(secs => %s) LIMIT %s))",
                (retention_s, batch_size),
            ).rowcount
        total += deleted
        if deleted < batch_size:
            return total


def open_pool(database_url: str, max_size: int = 8, name: str = "tasksaga") -> ConnectionPool:
    pool = ConnectionPool(
        database_url, min_size=1, max_size=max_size, open=False, name=name,
        kwargs={"application_name": name},
    )
    pool.open(wait=True, timeout=30)
    return pool

"""Applies event-store/migrations/*.sql in order, once each, under an advisory lock.

Idempotent: running it again applies only what is new. Several processes may run it at
start-up at the same time; the lock makes them take turns.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import psycopg

DEFAULT_MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "event-store" / "migrations"
_LOCK_KEY = 7_201_501


def apply_migrations(database_url: str, directory: Path = DEFAULT_MIGRATIONS_DIR) -> list[str]:
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no migrations in {directory}")
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
            for path in files:
                if path.name in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text().encode())
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
                applied.append(path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


def main() -> int:
    """Migrate ``--database-url`` alone, else every shard of TASKSAGA_SHARDS (each holds the
    whole schema), else TASKSAGA_DATABASE_URL."""
    from tasksaga.core.shards import ShardConfigError, parse_shards

    parser = argparse.ArgumentParser(description="Apply the event store's SQL migrations.")
    parser.add_argument("--database-url",
                        help="this database alone (default: every shard of TASKSAGA_SHARDS, "
                             "else TASKSAGA_DATABASE_URL)")
    args = parser.parse_args()
    try:
        urls = ({"database": args.database_url} if args.database_url else dict(parse_shards(
            os.environ.get("TASKSAGA_SHARDS"), os.environ.get("TASKSAGA_SHARD_BUCKETS"),
            os.environ.get("TASKSAGA_DATABASE_URL", "")).urls))
    except ShardConfigError as error:
        print(error, file=sys.stderr)
        return 2
    if not all(urls.values()):
        print("set TASKSAGA_DATABASE_URL (or TASKSAGA_SHARDS) or pass --database-url",
              file=sys.stderr)
        return 2
    for name, url in urls.items():
        applied = apply_migrations(url)
        label = "" if len(urls) == 1 else f"shard {name}: "
        print(label + "applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0

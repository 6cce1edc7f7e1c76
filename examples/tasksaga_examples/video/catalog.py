"""The content catalog the UpdateCatalog step writes: one row per video, keyed by task id so a
re-run of the step (same idempotency) updates rather than duplicates."""

from __future__ import annotations

import json
import os

import psycopg

_DDL = """
CREATE TABLE IF NOT EXISTS video_catalog (
    entry_id     text PRIMARY KEY,
    title        text NOT NULL,
    duration_s   double precision NOT NULL,
    renditions   jsonb NOT NULL,
    thumbnails   jsonb NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
)"""


def _connect(database_url: str | None = None) -> psycopg.Connection:
    url = database_url or os.environ.get("TASKSAGA_DATABASE_URL")
    if not url:
        raise RuntimeError("UpdateCatalog needs TASKSAGA_DATABASE_URL (the worker's database)")
    return psycopg.connect(url, connect_timeout=10)


def upsert_entry(entry_id: str, title: str, duration_s: float,
                 renditions: dict[str, str], thumbnails: list[str]) -> None:
    with _connect() as conn:
        conn.execute(_DDL)
        conn.execute(
            "INSERT INTO video_catalog (entry_id, title, duration_s, renditions, thumbnails)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (entry_id) DO UPDATE SET"
            " title = EXCLUDED.title, duration_s = EXCLUDED.duration_s,"
            " renditions = EXCLUDED.renditions, thumbnails = EXCLUDED.thumbnails,"
            " updated_at = now()",
            (entry_id, title, duration_s, json.dumps(renditions), json.dumps(thumbnails)),
        )


def delete_entry(entry_id: str) -> None:
    with _connect() as conn:
        conn.execute(_DDL)
        conn.execute("DELETE FROM video_catalog WHERE entry_id = %s", (entry_id,))


def entry_exists(entry_id: str, database_url: str | None = None) -> bool:
    with _connect(database_url) as conn:
        conn.execute(_DDL)
        row = conn.execute("SELECT 1 FROM video_catalog WHERE entry_id = %s",
                           (entry_id,)).fetchone()
    return row is not None

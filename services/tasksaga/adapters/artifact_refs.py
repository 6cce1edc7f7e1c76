"""Artifact references in Postgres (the ``ArtifactRefs`` port; migration 021)."""

from __future__ import annotations

from collections.abc import Callable

from psycopg_pool import ConnectionPool

# hashtextextended keys the advisory lock by the SHA-256: holds and releases of one content
# queue behind each other, of different contents never.
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 21))"


class PgArtifactRefs:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def hold(self, sha256: str, holder: str, ensure_stored: Callable[[], None]) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(_LOCK, (sha256,))
            conn.execute("INSERT INTO artifact_refs (sha256, holder) VALUES (%s, %s) "
                         "ON CONFLICT DO NOTHING", (sha256, holder))
            # Under the lock: a release of this content waits until the content is in place
            # and our row is committed, and then sees the row.
            ensure_stored()

    def release(self, sha256: str, holder: str, delete_stored: Callable[[], None]) -> int:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(_LOCK, (sha256,))
            conn.execute("DELETE FROM artifact_refs WHERE sha256 = %s AND holder = %s",
                         (sha256, holder))
            row = conn.execute("SELECT count(*) FROM artifact_refs WHERE sha256 = %s",
                               (sha256,)).fetchone()
            left = int(row[0]) if row is not None else 0
            if left == 0:
                delete_stored()
            return left

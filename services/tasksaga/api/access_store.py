"""The API's small operational rows: hashed API keys and per-tenant rate-limit windows.

Both live in Postgres so that every API replica sees the same keys and the same counters.
Each call is one short autocommit statement: nothing here holds a transaction.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from psycopg_pool import ConnectionPool

from tasksaga.api.identity import ApiKeyRecord, new_api_key


class ApiKeyStore:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def lookup(self, key_id: str) -> ApiKeyRecord | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT key_id, secret_hash, tenant, subject, roles, revoked_at IS NOT NULL"
                " FROM api_keys WHERE key_id = %s", (key_id,)).fetchone()
        if row is None:
            return None
        return ApiKeyRecord(row[0], bytes(row[1]), row[2], row[3], tuple(row[4]), row[5])

    def create(self, tenant: str, subject: str, roles: Sequence[str]) -> str:
        """Store a new key's hash; the returned key is shown once and never again."""
        key_id, key, secret_hash = new_api_key()
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO api_keys (key_id, secret_hash, tenant, subject, roles)"
                " VALUES (%s, %s, %s, %s, %s)", (key_id, secret_hash, tenant, subject,
                                                 list(roles)))
        return key

    def revoke(self, key_id: str) -> bool:
        with self._pool.connection() as conn:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s"
                " AND revoked_at IS NULL", (key_id,))
        return cursor.rowcount == 1


class RateLimiter:
    """At most ``requests`` per tenant per fixed window of ``window_s`` seconds."""

    def __init__(self, pool: ConnectionPool, requests: int, window_s: int) -> None:
        self._pool = pool
        self.requests = requests
        self.window_s = max(1, window_s)

    def hit(self, tenant: str, now_s: float) -> int | None:
        """Count one request; None if allowed, else the seconds to wait (Retry-After)."""
        if self.requests <= 0:
            return None
        window = int(now_s) // self.window_s * self.window_s
        with self._pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO api_rate_windows (tenant, window_start, requests)"
                " VALUES (%s, %s, 1) ON CONFLICT (tenant, window_start)"
                " DO UPDATE SET requests = api_rate_windows.requests + 1"
                " RETURNING requests", (tenant, window)).fetchone()
            if row is not None and row[0] == 1:
                # First request of a window: forget windows that can no longer matter.
                conn.execute("DELETE FROM api_rate_windows WHERE tenant = %s"
                             " AND window_start < %s", (tenant, window))
        assert row is not None
        if row[0] <= self.requests:
            return None
        return max(1, window + self.window_s - int(now_s))


def main(argv: list[str] | None = None) -> int:
    """``tasksaga-apikey create --tenant T --subject S [--role R ...]`` | ``revoke KEY_ID``."""
    parser = argparse.ArgumentParser(description="Manage service-account API keys.")
    parser.add_argument("--database-url", default=os.environ.get("TASKSAGA_DATABASE_URL"))
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--subject", required=True)
    create.add_argument("--role", action="append", default=[])
    revoke = commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)
    if not args.database_url:
        print("set TASKSAGA_DATABASE_URL or pass --database-url", file=sys.stderr)
        return 2
    with ConnectionPool(args.database_url, min_size=1, max_size=1, open=True) as pool:
        store = ApiKeyStore(pool)
        if args.command == "create":
            print(store.create(args.tenant, args.subject, args.role))
            return 0
        if store.revoke(args.key_id):
            print(f"revoked {args.key_id}")
            return 0
        print(f"no active key {args.key_id}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

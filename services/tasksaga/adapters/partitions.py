"""The event log's time partitions (018): the period they cover, listing them, creating the
upcoming ones ahead (the orchestrators' maintenance does it at start and every interval).

A stream's events go to the partition of the time the stream was opened, so a partition holds
whole task histories; once every task in it is terminal and old enough, the archiver
(``adapters/archive.py``) writes it to object storage and drops it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

_LOCK_KEY = 7_201_503
_BOUNDS = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")
DEFAULT_PARTITION = "events_default"


@dataclass(frozen=True)
class PartitionPeriod:
    """How much time one partition covers: a calendar month, a day (UTC) or N seconds."""

    unit: str  # "month", "day" or "seconds"
    seconds: int = 0

    @classmethod
    def parse(cls, text: str) -> PartitionPeriod:
        value = text.strip().lower()
        if value in ("month", "day"):
            return cls(value)
        number = value.removesuffix("s")
        if number.isdigit() and int(number) > 0:
            return cls("seconds", int(number))
        raise ValueError(f"partition period {text!r}: use 'month', 'day' or a number of "
                         "seconds such as '3600s'")

    def floor(self, at: datetime) -> datetime:
        """The start of the period ``at`` falls in (UTC)."""
        at = at.astimezone(UTC)
        if self.unit == "month":
            return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        if self.unit == "day":
            return at.replace(hour=0, minute=0, second=0, microsecond=0)
        epoch = int(at.timestamp())
        return datetime.fromtimestamp(epoch - epoch % self.seconds, UTC)

    def after(self, lower: datetime) -> datetime:
        """The end of the period that starts at ``lower``."""
        if self.unit == "month":
            return (lower.replace(day=1) + timedelta(days=32)).replace(day=1)
        if self.unit == "day":
            return lower + timedelta(days=1)
        return lower + timedelta(seconds=self.seconds)


@dataclass(frozen=True)
class EventPartition:
    name: str
    lower: datetime
    upper: datetime

    def closed(self, now: datetime) -> bool:
        """No stream can be opened in it any more."""
        return self.upper <= now


def partition_name(lower: datetime) -> str:
    return "events_p" + lower.astimezone(UTC).strftime("%Y%m%dt%H%M%S")


def upcoming(existing: list[EventPartition], period: PartitionPeriod, now: datetime,
             ahead: timedelta) -> list[tuple[datetime, datetime]]:
    """The partitions to create so that the log is covered until ``now + ahead``: consecutive
    after the last one (a changed period changes only the new ones), or from the current
    period when there is none or the last one ended in the past (what lies between is in the
    default partition, which a new partition may not overlap)."""
    start = period.floor(now)
    if existing:
        start = max(start, max(p.upper for p in existing))
    ranges = []
    while start < now + ahead:
        end = period.after(start)
        ranges.append((start, end))
        start = end
    return ranges


def list_partitions(conn: psycopg.Connection) -> list[EventPartition]:
    """The range partitions of ``events`` in time order (not the default one)."""
    conn.execute("SET LOCAL TimeZone = 'UTC'")  # bounds are printed in the session's zone
    rows = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"
    ).fetchall()
    found = []
    for name, bound in rows:
        match = _BOUNDS.search(bound)
        if match:
            found.append(EventPartition(name, datetime.fromisoformat(match[1]),
                                        datetime.fromisoformat(match[2])))
    return sorted(found, key=lambda p: p.lower)


@dataclass
class PartitionsEnsured:
    created: list[str]
    # Ranges left to the default partition because it already holds rows of them (a new
    # partition may not overlap them, and they cannot move: the log refuses DELETE).
    skipped: list[tuple[datetime, datetime]]


def ensure_partitions(conn: psycopg.Connection, period: PartitionPeriod, ahead: timedelta,
                      now: datetime | None = None) -> PartitionsEnsured:
    """Create the partitions ``upcoming`` names until ``ahead`` past ``now`` (by default the
    database's clock), in one transaction under a lock so orchestrators starting together take
    turns."""
    done = PartitionsEnsured([], [])
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        now = now or database_now(conn)
        for lower, upper in upcoming(list_partitions(conn), period, now, ahead):
            taken = conn.execute(
                f"SELECT EXISTS (SELECT 1 FROM {DEFAULT_PARTITION}"
                " WHERE stream_opened_at >= %s AND stream_opened_at < %s)",
                (lower, upper)).fetchone()
            if taken and taken[0]:
                done.skipped.append((lower, upper))
                continue
            done.created.append(create_partition(conn, lower, upper))
    return done


def create_partition(conn: psycopg.Connection, lower: datetime, upper: datetime) -> str:
    """One partition of the log for streams opened in [lower, upper); returns its name."""
    name = partition_name(lower)
    conn.execute("SELECT create_event_partition(%s, %s, %s)", (name, lower, upper))
    return name


def drop_partition(conn: psycopg.Connection, name: str) -> None:
    """Detach and drop one partition, in the caller's transaction (the archiver's, after the
    archive is verified: the only way rows leave the log)."""
    if name == DEFAULT_PARTITION:
        raise ValueError("the default partition is never dropped")
    conn.execute(sql.SQL("ALTER TABLE events DETACH PARTITION {}").format(sql.Identifier(name)))
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))


def database_now(conn: psycopg.Connection) -> datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value

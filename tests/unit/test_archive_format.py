"""The pure parts of retention: partition periods and ranges, the archive's container file and
its check against the manifest."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import BytesIO

import pytest

from tasksaga.adapters.archive_format import (
    ArchiveCorrupt,
    ArchivedEvent,
    HashingReader,
    Manifest,
    check_against,
    write_events,
)
from tasksaga.adapters.partitions import EventPartition, PartitionPeriod, upcoming

T0 = datetime(2026, 12, 17, 15, 42, 7, tzinfo=UTC)


def test_a_period_is_a_month_a_day_or_seconds_and_anything_else_is_refused_clearly() -> None:
    assert PartitionPeriod.parse("Month") == PartitionPeriod("month")
    assert PartitionPeriod.parse("3600s") == PartitionPeriod("seconds", 3600)
    assert PartitionPeriod.parse("10") == PartitionPeriod("seconds", 10)
    for bad in ("week", "0s", "-5", ""):
        with pytest.raises(ValueError, match="use 'month', 'day' or a number of seconds"):
            PartitionPeriod.parse(bad)


def test_periods_start_on_utc_boundaries_and_months_have_their_own_length() -> None:
    month, day, ten = (PartitionPeriod.parse(p) for p in ("month", "day", "10s"))
    assert month.floor(T0) == datetime(2026, 12, 1, tzinfo=UTC)
    assert month.after(datetime(2026, 12, 1, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert month.after(datetime(2027, 1, 1, tzinfo=UTC)) == datetime(2027, 2, 1, tzinfo=UTC)
    assert month.after(datetime(2027, 2, 1, tzinfo=UTC)) == datetime(2027, 3, 1, tzinfo=UTC)
    assert day.floor(T0) == datetime(2026, 12, 17, tzinfo=UTC)
    assert ten.floor(T0) == datetime(2026, 12, 17, 15, 42, 0, tzinfo=UTC)
    assert ten.after(ten.floor(T0)) == datetime(2026, 12, 17, 15, 42, 10, tzinfo=UTC)


def test_upcoming_partitions_follow_the_last_one_and_never_fill_a_past_gap() -> None:
    day = PartitionPeriod.parse("day")
    assert upcoming([], day, T0, timedelta(days=1)) == [
        (datetime(2026, 12, 17, tzinfo=UTC), datetime(2026, 12, 18, tzinfo=UTC)),
        (datetime(2026, 12, 18, tzinfo=UTC), datetime(2026, 12, 19, tzinfo=UTC))]
    # A month partition exists until the 1st: days follow it (a changed period).
    month = EventPartition("m", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert upcoming([month], day, T0, timedelta(days=15)) == [
        (datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 1, 2, tzinfo=UTC))]
    assert upcoming([month], day, T0, timedelta(days=1)) == []
    # The last one ended long ago: start at the current period (the default partition holds
    # what lies between, and a new partition may not overlap its rows).
    old = EventPartition("o", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    assert upcoming([old], day, T0, timedelta(hours=1))[0][0] == datetime(2026, 12, 17,
                                                                          tzinfo=UTC)


def _events(tasks: dict[str, int]) -> list[ArchivedEvent]:
    position = 0
    out = []
    for task_id, count in tasks.items():
        for version in range(1, count + 1):
            position += 1
            out.append(ArchivedEvent(position, task_id, version, "StepCompleted",
                                     f"{task_id}:{version}", bytes([version]) * 50, T0, T0))
    return out


def _archive(events: list[ArchivedEvent]) -> tuple[Manifest, bytes]:
    manifest = Manifest("events_p20261201t000000", "2026-12-01", "2027-01-01", "k/events.avro")
    out = BytesIO()
    write_events(out, events, manifest)
    return manifest, out.getvalue()


def _chunks(data: bytes, size: int = 7) -> Iterator[bytes]:
    return (data[i:i + size] for i in range(0, len(data), size))


def test_an_archive_reads_back_whole_and_gives_one_tasks_events() -> None:
    events = _events({"a": 3, "b": 2})
    manifest, data = _archive(events)
    assert {t: (e.events, e.first_version, e.last_version) for t, e in manifest.tasks.items()} \
        == {"a": (3, 1, 3), "b": (2, 1, 2)}
    assert manifest.event_count == 5 and manifest.size_bytes == len(data)
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert check_against(manifest, HashingReader(_chunks(data)), keep="b") == events[3:]


def test_a_changed_byte_or_a_manifest_that_does_not_match_is_refused() -> None:
    manifest, data = _archive(_events({"a": 3, "b": 2}))
    flipped = data[:-20] + bytes([data[-20] ^ 0xFF]) + data[-19:]
    with pytest.raises(ArchiveCorrupt):
        check_against(manifest, HashingReader(_chunks(flipped)))
    manifest.tasks["a"].events = 4
    with pytest.raises(ArchiveCorrupt, match="per-task counts differ"):
        check_against(manifest, HashingReader(_chunks(data)))
    _, gapped = _archive([e for e in _events({"a": 3}) if e.version != 2])
    good, _ = _archive(_events({"a": 3}))
    with pytest.raises(ArchiveCorrupt, match="version 3 where 2 was expected"):
        check_against(good, HashingReader(_chunks(gapped)))
    with pytest.raises(ArchiveCorrupt, match="manifest format"):
        Manifest.from_json(b'{"format_version": 99}')

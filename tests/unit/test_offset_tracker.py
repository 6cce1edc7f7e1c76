"""Out-of-order completion never commits past a message that is still running."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tasksaga.adapters.partition_leases import OffsetTracker

P = ("topic", 0)


def test_the_position_waits_for_the_lowest_running_offset() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.started(P, offset)
    tracker.finished(P, 12)
    tracker.finished(P, 11)
    assert tracker.commit_positions() == {P: 10}  # 10 still runs: a crash re-delivers it
    tracker.finished(P, 10)
    assert tracker.commit_positions() == {P: 13}
    assert tracker.commit_positions() == {}  # nothing moved since


def test_a_revoked_partition_is_forgotten() -> None:
    tracker = OffsetTracker()
    tracker.started(P, 5)
    tracker.forget(P)
    tracker.finished(P, 5)
    assert tracker.commit_positions() == {}
    assert tracker.running == 0


@given(st.permutations(list(range(20))), st.integers(0, 20))
def test_no_position_ever_passes_an_unfinished_offset(order: list[int], done_count: int) -> None:
    tracker = OffsetTracker()
    for offset in range(20):
        tracker.started(P, offset)
    finished = set(order[:done_count])
    for offset in order[:done_count]:
        tracker.finished(P, offset)
    position = tracker.commit_positions().get(P, 0)
    assert all(o in finished for o in range(position))
    unfinished = set(range(20)) - finished
    assert position == (min(unfinished) if unfinished else 20)


def test_a_held_offset_frees_its_slot_but_keeps_the_position_below_it() -> None:
    """A message stopped without being done (its result could not be sent) must not hold a
    concurrency slot, nor let the commit pass it: a restart redelivers it."""
    tracker = OffsetTracker()
    for offset in (3, 4):
        tracker.started(P, offset)
    tracker.hold(P, 3)
    tracker.finished(P, 4)
    assert tracker.running == 0
    assert tracker.commit_positions() == {P: 3}

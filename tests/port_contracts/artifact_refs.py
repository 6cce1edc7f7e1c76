"""The ArtifactRefs port's contract: a content is deleted with its last holder, never while
another holds it, and holding or releasing again changes nothing; a hold and a release of
one content never run their callbacks at the same time."""

from __future__ import annotations

import threading
import time
import uuid

from tasksaga.core.ports import ArtifactRefs


def _nothing() -> None:
    return None


class ArtifactRefsContract:
    """Subclasses provide a ``refs`` fixture."""

    def test_the_content_goes_with_its_last_holder(self, refs: ArtifactRefs) -> None:
        sha, deleted = uuid.uuid4().hex, []
        refs.hold(sha, "t1:A", _nothing)
        refs.hold(sha, "t2:A", _nothing)
        assert refs.release(sha, "t1:A", lambda: deleted.append(sha)) == 1
        assert deleted == []
        assert refs.release(sha, "t2:A", lambda: deleted.append(sha)) == 0
        assert deleted == [sha]

    def test_holding_again_counts_once_and_releasing_a_stranger_changes_nothing(
        self, refs: ArtifactRefs,
    ) -> None:
        sha, deleted = uuid.uuid4().hex, []
        refs.hold(sha, "t1:A", _nothing)
        refs.hold(sha, "t1:A", _nothing)  # a retried publish of the same content
        refs.hold(sha, "t2:A", _nothing)
        assert refs.release(sha, "nobody", lambda: deleted.append(sha)) == 2
        assert refs.release(sha, "t1:A", lambda: deleted.append(sha)) == 1
        assert deleted == []

    def test_ensure_stored_runs_under_the_hold(self, refs: ArtifactRefs) -> None:
        ran: list[str] = []
        sha = uuid.uuid4().hex
        refs.hold(sha, "t1:A", lambda: ran.append("stored"))
        assert ran == ["stored"]
        refs.release(sha, "t1:A", _nothing)

    def test_a_release_waits_for_a_hold_of_the_same_content(self, refs: ArtifactRefs) -> None:
        sha, order = uuid.uuid4().hex, []
        refs.hold(sha, "t1:A", _nothing)
        storing = threading.Event()

        def slow_store() -> None:
            storing.set()
            time.sleep(0.3)
            order.append("stored")

        holder = threading.Thread(target=refs.hold, args=(sha, "t2:A", slow_store))
        holder.start()
        assert storing.wait(5)
        # t1's release runs after t2's hold committed: t2 holds it, nothing is deleted.
        left = refs.release(sha, "t1:A", lambda: order.append("deleted"))
        order.append("released")
        holder.join(5)
        assert (left, order) == (1, ["stored", "released"])
        refs.release(sha, "t2:A", _nothing)

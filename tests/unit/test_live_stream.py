"""Live progress without I/O: the fan-out hub, the replay/live seam, SSE framing, tickets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tasksaga.adapters.wire import Envelope
from tasksaga.api.live.hub import LiveHub, TooManyWatchers
from tasksaga.api.live.messages import (
    DROPPED,
    END,
    EVENT,
    PROGRESS,
    BadResumePoint,
    LiveMessage,
    event_message,
    progress_message,
    resume_after,
    sse_frame,
)
from tasksaga.api.live.session import LiveSession
from tasksaga.api.live.tickets import BadTicket, TicketSigner
from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.authorization import Principal

TASK = "task-1"


def event(version: int, task_id: str = TASK, terminal: bool = False) -> LiveMessage:
    payload: object = (ev.TaskCompleted("{}", 1000 + version) if terminal
                       else ev.StepCompleted(f"S{version}", 1, "{}", 1000 + version))
    return event_message(Envelope(payload, f"{task_id}:{version}", task_id, task_id, None,
                                  1_700_000_000_000 + version, "T", version))


def beat(progress: float | None, message: str | None = None) -> LiveMessage | None:
    return progress_message(Envelope(msg.StepHeartbeat(TASK, "S1", 1, progress, message),
                                     "hb", TASK, TASK, None, 1_700_000_000_500, "T", 0))


class FakeLog:
    """The log as it is when read; ``during_read`` runs inside the read, as a commit and a
    Kafka delivery racing the replay would."""

    def __init__(self, events: list[LiveMessage],
                 during_read: Callable[[], None] | None = None) -> None:
        self.events = events
        self.during_read = during_read
        self.reads: list[int] = []
        self.progress_rows: list[LiveMessage] = []

    async def events_from(self, task_id: str, first_version: int,
                          limit: int) -> list[LiveMessage]:
        self.reads.append(first_version)
        found = [e for e in self.events if e.version is not None
                 and e.version >= first_version][:limit]
        if self.during_read is not None:
            hook, self.during_read = self.during_read, None
            hook()
        return found

    async def progress(self, task_id: str) -> list[LiveMessage]:
        return self.progress_rows


async def collect(session: LiveSession, limit: int = 50,
                  keepalives: int = 20) -> list[LiveMessage]:
    """The session's messages until it ends, or until it has been silent for ``keepalives``
    keep-alives in a row (a stream that would wait forever)."""
    out: list[LiveMessage] = []
    silent = 0
    async for message in session.messages():
        if message is None:
            silent += 1
            if silent >= keepalives:
                break
            continue
        silent = 0
        out.append(message)
        if len(out) >= limit:
            break
    return out


def versions(messages: list[LiveMessage]) -> list[int | None]:
    return [m.version for m in messages if m.kind == EVENT]


def run_session(hub: LiveHub, log: FakeLog, after: int,
                live: list[LiveMessage] | None = None) -> tuple[LiveSession, list[LiveMessage]]:
    async def go() -> tuple[LiveSession, list[LiveMessage]]:
        session = LiveSession(hub, log, TASK, after, keepalive_s=0.01)
        await session.open()
        if live:
            hub.publish(live)
        return session, await collect(session)

    return asyncio.run(go())


# -- the seam ------------------------------------------------------------------------------------

def test_an_event_committed_during_the_replay_is_delivered_once_and_in_order() -> None:
    hub = LiveHub()
    log = FakeLog([event(1), event(2), event(3)])

    def commit_during_read() -> None:
        # v3 (already in the read) reaches the consumer only now, and the terminal v4 is
        # committed after the read and published at once; nothing comes after it. Only a
        # watcher subscribed before the read gets v4, and v3 must not come twice.
        log.events.append(event(4, terminal=True))
        hub.publish([event(3), event(4, terminal=True)])

    log.during_read = commit_during_read
    _session, out = run_session(hub, log, 0)
    assert versions(out) == [1, 2, 3, 4]
    assert out[-1].kind == END and out[-1].data["status"] == "Completed"


def test_resuming_after_a_version_sends_exactly_the_later_events() -> None:
    hub = LiveHub()
    log = FakeLog([event(1), event(2), event(3), event(4, terminal=True)])
    _session, out = run_session(hub, log, 2)
    assert versions(out) == [3, 4]
    assert log.reads == [2]  # read from the resume point itself, to see if it ended there


def test_resuming_at_the_terminal_event_finishes_without_a_message() -> None:
    hub = LiveHub()
    session = LiveSession(hub, FakeLog([event(1), event(2, terminal=True)]), TASK, 2, 0.01)
    asyncio.run(session.open())
    assert session.finished
    assert hub.watchers == 0


def test_a_terminal_event_followed_by_an_operators_retry_does_not_end_the_replay() -> None:
    hub = LiveHub()
    # CompensationFailed at v2, then an operator's retry and the final TaskFailed at v4.
    retried = event_message(Envelope(ev.CompensationRetryRequested(1003), f"{TASK}:3", TASK,
                                     TASK, None, 1_700_000_000_003, "T", 3))
    first_end = event_message(Envelope(
        ev.TaskCompensationFailed("S1", "E", "boom", 1002), f"{TASK}:2", TASK, TASK, None,
        1_700_000_000_002, "T", 2))
    final = event_message(Envelope(ev.TaskFailed("gave up", 1004), f"{TASK}:4", TASK, TASK,
                                   None, 1_700_000_000_004, "T", 4))
    log = FakeLog([event(1), first_end, retried, final])
    _session, out = run_session(hub, log, 0)
    assert versions(out) == [1, 2, 3, 4]
    assert out[-1].kind == END and out[-1].data["status"] == "Failed"
    resumed = LiveSession(hub, log, TASK, 2, 0.01)
    asyncio.run(resumed.open())
    assert not resumed.finished


def test_resuming_from_a_version_the_log_does_not_hold_is_refused() -> None:
    hub = LiveHub()
    session = LiveSession(hub, FakeLog([event(1), event(2)]), TASK, 9, 0.01)
    with pytest.raises(BadResumePoint, match="version 9 is not in this task's log"):
        asyncio.run(session.open())
    assert hub.watchers == 0


def test_a_gap_in_the_live_events_is_read_from_the_log() -> None:
    hub = LiveHub()
    log = FakeLog([event(1)])

    async def go() -> list[LiveMessage]:
        session = LiveSession(hub, log, TASK, 0, keepalive_s=0.01)
        await session.open()
        log.events.extend([event(2), event(3, terminal=True)])
        hub.publish([event(3, terminal=True)])  # v2 never came live
        return await collect(session)

    out = asyncio.run(go())
    assert versions(out) == [1, 2, 3]
    assert log.reads == [1, 2]


def test_the_stream_ends_at_the_terminal_event_and_unsubscribes() -> None:
    hub = LiveHub()
    session, out = run_session(hub, FakeLog([]), 0,
                               live=[event(1, terminal=True), event(2)])
    assert [m.kind for m in out] == [EVENT, END]
    assert hub.watchers == 0 and not hub.watched(TASK)
    assert session.last_version == 1


def test_progress_passes_between_events_unversioned() -> None:
    hub = LiveHub()
    log = FakeLog([event(1)])
    stored = beat(0.1, "stored")
    assert stored is not None
    log.progress_rows = [stored]
    live = beat(0.5, "half")
    assert live is not None
    _session, out = run_session(hub, log, 0, live=[live, event(2, terminal=True)])
    assert [(m.kind, m.version) for m in out] == [
        (EVENT, 1), (PROGRESS, None), (PROGRESS, None), (EVENT, 2), (END, None)]
    assert out[2].data["progress"] == 0.5 and out[2].data["message"] == "half"


def test_a_bare_heartbeat_is_not_a_progress_message() -> None:
    assert beat(None, None) is None


# -- the hub -------------------------------------------------------------------------------------

def test_a_watcher_that_falls_behind_is_dropped_with_its_resume_point() -> None:
    hub = LiveHub(capacity=2)

    async def go() -> list[LiveMessage]:
        session = LiveSession(hub, FakeLog([event(1)]), TASK, 0, keepalive_s=0.01)
        await session.open()
        hub.publish([event(2), event(3), event(4)])  # the third overflows its queue
        return await collect(session)

    out = asyncio.run(go())
    assert out[-1].kind == DROPPED
    assert out[-1].data["resume_after"] == 1
    assert hub.dropped == 1 and hub.watchers == 0


def test_each_watcher_of_a_task_gets_every_message_and_others_none() -> None:
    async def go() -> tuple[list[int | None], list[int | None], bool]:
        hub = LiveHub()
        first, second, other = hub.watch(TASK), hub.watch(TASK), hub.watch("task-2")
        hub.publish([event(1), event(2)])
        got1 = [(await first.next(0.01)) for _ in range(2)]
        got2 = [(await second.next(0.01)) for _ in range(2)]
        return ([m.version for m in got1 if m], [m.version for m in got2 if m],
                await other.next(0.01) is None)

    got1, got2, other_empty = asyncio.run(go())
    assert got1 == got2 == [1, 2]
    assert other_empty


def test_the_hub_refuses_watchers_beyond_its_limit_and_after_shutdown() -> None:
    async def go() -> None:
        hub = LiveHub(max_watchers=1)
        watcher = hub.watch(TASK)
        with pytest.raises(TooManyWatchers, match="already serves 1 watchers"):
            hub.watch(TASK)
        hub.shutdown("stopping")
        assert watcher.dropped == "stopping"
        with pytest.raises(TooManyWatchers, match="stopping"):
            hub.watch(TASK)

    asyncio.run(go())


# -- framing and resume points -------------------------------------------------------------------

def test_an_sse_frame_carries_the_version_as_its_id_and_progress_carries_none() -> None:
    frame = sse_frame(event(3))
    assert frame.startswith("id: 3\nevent: event\ndata: {")
    assert frame.endswith("}\n\n") and frame.count("\n") == 4
    progress = beat(0.25)
    assert progress is not None
    assert sse_frame(progress).startswith("event: progress\ndata: ")


def test_last_event_id_wins_over_after_version_and_garbage_is_refused() -> None:
    assert resume_after("7", 3) == 7
    assert resume_after(None, 3) == 3
    assert resume_after(None, None) == 0
    with pytest.raises(BadResumePoint, match="Last-Event-ID must be an event version"):
        resume_after("abc", None)


# -- tickets -------------------------------------------------------------------------------------

def test_a_stream_ticket_stands_for_its_caller_on_its_task_until_it_expires() -> None:
    signer = TicketSigner(b"s" * 32, lifetime_s=60)
    alice = Principal("alice", "acme", frozenset({"reader"}))
    ticket = signer.issue(alice, TASK, now_s=1000)
    assert signer.verify(ticket, TASK, now_s=1059) == alice
    with pytest.raises(BadTicket, match="expired"):
        signer.verify(ticket, TASK, now_s=1060)
    with pytest.raises(BadTicket, match="another task"):
        signer.verify(ticket, "task-2", now_s=1000)
    with pytest.raises(BadTicket, match="signature"):
        TicketSigner(b"t" * 32).verify(ticket, TASK, now_s=1000)
    body, _, signature = ticket.partition(".")
    with pytest.raises(BadTicket, match="signature"):
        signer.verify(body[:-2] + "AA." + signature, TASK, now_s=1000)

"""The API's live feed fetches only while streams are open (none from its start, none once
the last one closed), and a stream opened while it is idle still gets every event: the
feed follows the partitions' ends before the stream reads the log (real Kafka)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_producer import KafkaProducer
from tasksaga.adapters.topics import ensure_topics
from tasksaga.adapters.wire import Topics
from tasksaga.api.live.feed import LiveFeed
from tasksaga.api.live.hub import LiveHub
from tasksaga.api.live.messages import LiveMessage, event_message
from tasksaga.api.live.session import LiveSession
from tests.integration.conftest import completed_step, new_task_id, submitted


class ListLog:
    """The task's log, as the test commits to it."""

    def __init__(self) -> None:
        self.events: list[LiveMessage] = []

    async def events_from(self, task_id: str, first_version: int,
                          limit: int) -> list[LiveMessage]:
        return [m for m in self.events
                if m.version is not None and m.version >= first_version][:limit]

    async def progress(self, task_id: str) -> list[LiveMessage]:
        return []


async def _until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return False


async def _read_versions(session: LiveSession, seen: list[int]) -> None:
    """Append the version of every event the stream sends, until cancelled."""
    async for batch in session.batches():
        seen.extend(m.version for m in batch if m.kind == "event" and m.version)


def test_an_idle_feed_gives_up_its_partitions_and_a_new_stream_still_gets_every_event(
    kafka_bootstrap: str, codec: AvroCodec, topic_prefix: str,
) -> None:
    topics = Topics(topic_prefix)
    ensure_topics(kafka_bootstrap, [topics.task_events, topics.step_results], partitions=2)
    producer = KafkaProducer(kafka_bootstrap, "live-feed-idle-test")
    task_id = new_task_id()

    async def scenario() -> None:
        hub = LiveHub()
        feed = LiveFeed(kafka_bootstrap, topics.task_events, topics.step_results, codec, hub,
                        idle_s=3.0)
        feed.start(asyncio.get_running_loop())
        try:
            assert await asyncio.to_thread(feed.wait_ready, 30.0)
            # Ready (its topics are there) but fetching nothing before a stream asks: a feed
            # that followed from its start made 70 fetches a second for ten seconds.
            await asyncio.sleep(1.0)
            assert not feed.following, "a feed without streams follows its partitions"

            # Committed and published while idle, before any stream: a stream reads it
            # from the log; the feed resumes from the partitions' new ends, past it.
            log = ListLog()
            first = submitted(task_id)
            log.events.append(event_message(first))
            producer.send_and_wait(topics.task_events, task_id.encode(), codec.encode(first))

            session = LiveSession(hub, log, task_id, 0, keepalive_s=0.2, follow=feed.follow)
            await session.open()
            assert feed.following  # the stream waited until the feed followed again

            # Published right after open(): only the feed can deliver it (the test's log
            # never gets it), so a feed that resumed later than open() would lose it.
            producer.send_and_wait(topics.task_events, task_id.encode(),
                                   codec.encode(completed_step(task_id, 2)))
            seen: list[int] = []
            reader = asyncio.create_task(_read_versions(session, seen))
            assert await _until(lambda: len(seen) >= 2, 15.0), f"the stream got {seen}"
            assert seen == [1, 2]
            assert hub.delivered == 1  # the feed delivered version 2 only

            # While a stream is open, the feed keeps following however long it is quiet.
            await asyncio.sleep(1.5)
            assert feed.following
            reader.cancel()  # the client goes away: its session ends
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            assert hub.watchers == 0
            assert await _until(lambda: not feed.following, 10.0)
        finally:
            await asyncio.to_thread(feed.stop)

    asyncio.run(scenario())

"""A worker that survives its peers' comings and goings keeps consuming every partition.

Two real parallel consumer loops share one group on a 6-partition topic: the survivor runs
throughout while a second worker joins and leaves (gracefully) again and again, each change an
incremental (cooperative-sticky) rebalance that moves partitions away from the survivor and
back. The test plays the orchestrator, feeding step commands the whole time; afterwards the
survivor alone must answer every command, including a batch sent once the peer has left for
good, on all six partitions (R5 of the chaos suite saw the survivor stop for minutes).
"""

from __future__ import annotations

import faulthandler
import sys
import threading
import time

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import KafkaProducer
from tasksaga.adapters.wire import Topics
from tasksaga.core import messages as msg
from tests.integration import worker_probe as probe
from tests.integration.worker_probe import ProbeRequest

PARTITIONS = 6
CYCLES = 2  # one long stay of a peer, one short (it leaves mid-rebalance)
FEED_RATE_PER_S = 40
AFTER_BATCH = 60
HANDOVER_CYCLES = 2


def test_the_surviving_worker_consumes_every_partition_after_peers_join_and_leave(
    kafka_bootstrap: str, codec: AvroCodec, topic_prefix: str,
) -> None:
    topics = Topics(topic_prefix)
    probe.ensure_probe_topics(kafka_bootstrap, topics, partitions=PARTITIONS)
    group = f"{topic_prefix}-rebalance"
    producer = KafkaProducer(kafka_bootstrap, "rebalance-test")
    # Steps slower than the feed can be served by four slots: the pool fills up and the
    # survivor pauses its partitions now and then, as a worker under load does.
    request = ProbeRequest(sleep_s=0.15)
    survivor = probe.in_process_worker(kafka_bootstrap, codec, topics, concurrency=4,
                                       group=group).start()
    feeding = threading.Event()
    sent: list[str] = []

    def feed() -> None:
        index = 0
        while not feeding.is_set():
            probe.send(producer, codec, topics, probe.command(f"r-{index}", request))
            sent.append(f"r-{index}")
            index += 1
            time.sleep(1 / FEED_RATE_PER_S)

    feeder = threading.Thread(target=feed, daemon=True, name="feed")
    feeder.start()
    peer_runs = 0
    try:
        time.sleep(3)
        for cycle in range(CYCLES):
            peer = probe.in_process_worker(kafka_bootstrap, codec, topics, concurrency=4,
                                           group=group).start()
            time.sleep(4 if cycle % 2 == 0 else 1.5)  # a short stay leaves mid-rebalance too
            peer.close()
            peer_runs += peer.runner.executions
            time.sleep(3)
        feeding.set()
        feeder.join(10)
        after = [f"after-{i}" for i in range(AFTER_BATCH)]
        for task_id in after:
            probe.send(producer, codec, topics, probe.command(task_id, request))
        expected = set(sent) | set(after)
        envelopes = probe.read_envelopes(kafka_bootstrap, codec, topics.step_results,
                                         len(expected), timeout_s=60, settle_s=3)
        assignment = sorted(partition for _, partition in survivor.loop.assignment)
        answered = {r.task_id for r in probe.results_of(envelopes)
                    if isinstance(r, msg.StepSucceeded)}
        missing = expected - answered
        if missing:  # show where the survivor's threads are when it stalls
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    finally:
        feeding.set()
        survivor.close()
    print(f"\nrebalance: {CYCLES} peer join/leave cycles, {len(expected)} commands, "
          f"survivor ran {survivor.runner.executions}, peers ran {peer_runs}, "
          f"{len(missing)} unanswered, survivor's partitions at the end {assignment}, "
          f"{survivor.loop.commits} commits")
    assert assignment == list(range(PARTITIONS))
    assert missing == set(), f"{len(missing)} commands never answered, e.g. {sorted(missing)[:5]}"


def test_a_rebalance_lets_no_command_run_on_two_workers(
    kafka_bootstrap: str, codec: AvroCodec, topic_prefix: str,
) -> None:
    """A worker giving partitions up lets their running steps finish and commits them first,
    so the new owner does not start them again (the chaos suite's R5 saw one attempt run by
    two workers when the old owner was told to stop and the new one started from the last
    commit)."""
    topics = Topics(topic_prefix)
    probe.ensure_probe_topics(kafka_bootstrap, topics, partitions=PARTITIONS)
    group = f"{topic_prefix}-handover"
    producer = KafkaProducer(kafka_bootstrap, "handover-test")
    request = ProbeRequest(sleep_s=0.5)  # long enough to be running at every rebalance
    prefix = f"{topic_prefix}-h"
    first = probe.in_process_worker(kafka_bootstrap, codec, topics, concurrency=4,
                                    group=group).start()
    sent: list[str] = []
    peers_ran = 0
    try:
        time.sleep(3)
        for cycle in range(HANDOVER_CYCLES):
            batch = [f"{prefix}-{cycle}-{i}" for i in range(16)]
            for task_id in batch:
                probe.send(producer, codec, topics, probe.command(task_id, request))
            sent += batch
            peer = probe.in_process_worker(kafka_bootstrap, codec, topics, concurrency=4,
                                           group=group).start()
            time.sleep(3)
            more = [f"{prefix}-{cycle}-late-{i}" for i in range(16)]
            for task_id in more:
                probe.send(producer, codec, topics, probe.command(task_id, request))
            sent += more
            time.sleep(0.5)
            peer.close()  # leaves while steps of its partitions run
            peers_ran += peer.runner.executions
        envelopes = probe.read_envelopes(kafka_bootstrap, codec, topics.step_results,
                                         len(sent), timeout_s=60, settle_s=3)
    finally:
        first.close()
    runs = [key for key in probe.EXECUTIONS if key[0].startswith(prefix)]
    twice = sorted({key for key in runs if runs.count(key) > 1})
    answered = {r.task_id for r in probe.results_of(envelopes)
                if isinstance(r, msg.StepSucceeded)}
    print(f"\nhandover: {len(sent)} commands, {len(runs)} runs ({peers_ran} by peers), "
          f"{len(twice)} run twice, {first.loop.commits} commits by the first worker")
    assert peers_ran > 0, "the peer never got a partition: the test proves nothing"
    assert answered == set(sent)
    assert twice == [], f"commands run by two workers: {twice[:5]}"


def test_a_partition_paused_when_revoked_is_consumed_again_when_it_comes_back(
    kafka_bootstrap: str, codec: AvroCodec, topic_prefix: str,
) -> None:
    """librdkafka keeps a partition's pause flag across revocation and re-assignment: a worker
    whose full pool had paused its partitions when a peer took some must resume them, or the
    ones given back later are never consumed again."""
    topics = Topics(topic_prefix)
    probe.ensure_probe_topics(kafka_bootstrap, topics, partitions=PARTITIONS)
    group = f"{topic_prefix}-paused"
    producer = KafkaProducer(kafka_bootstrap, "paused-test")
    worker = probe.in_process_worker(kafka_bootstrap, codec, topics, concurrency=1, group=group)
    worker.loop.PAUSE_AFTER_S = 0.1  # pause as soon as the single slot is taken
    worker.start()
    try:
        time.sleep(3)
        # One long step fills the pool: the worker pauses every partition it owns.
        probe.send(producer, codec, topics, probe.command(f"{topic_prefix}-long",
                                                          ProbeRequest(sleep_s=4)))
        time.sleep(1.5)
        peer = probe.in_process_worker(kafka_bootstrap, codec, topics, concurrency=1,
                                       group=group).start()
        time.sleep(6)  # the peer takes half of the (paused) partitions
        peer.close()  # and gives them back
        time.sleep(3)
        batch = [f"{topic_prefix}-back-{i}" for i in range(60)]  # on every partition
        for task_id in batch:
            probe.send(producer, codec, topics, probe.command(task_id, ProbeRequest()))
        envelopes = probe.read_envelopes(kafka_bootstrap, codec, topics.step_results,
                                         len(batch) + 1, timeout_s=40, settle_s=3)
        assignment = sorted(partition for _, partition in worker.loop.assignment)
    finally:
        worker.close()
    answered = {r.task_id for r in probe.results_of(envelopes)
                if isinstance(r, msg.StepSucceeded)}
    missing = set(batch) - answered
    print(f"\npaused handover: {len(batch)} commands after the peer left, "
          f"{len(missing)} unanswered, partitions {assignment}")
    assert assignment == list(range(PARTITIONS))
    assert missing == set(), f"partitions left paused: {len(missing)} commands unanswered"

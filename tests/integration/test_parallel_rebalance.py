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
CYCLES = 4
FEED_RATE_PER_S = 40
AFTER_BATCH = 60


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

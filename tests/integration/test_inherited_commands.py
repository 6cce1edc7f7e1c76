"""The parallel consumer marks the records that were in a partition before it got the
partition as inherited (a previous owner may have run them: the worker then asks the
projections), and the ones produced after as new (the hot path: no question asked)."""

from __future__ import annotations

import threading
import time
import uuid

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import ConsumerSettings, KafkaProducer
from tasksaga.adapters.kafka_parallel import Lease, ParallelConsumerLoop
from tasksaga.adapters.wire import Envelope, Topics
from tests.integration import worker_probe as probe
from tests.integration.worker_probe import ProbeRequest


def test_records_older_than_the_assignment_are_inherited_and_later_ones_are_not(
    kafka_bootstrap: str, codec: AvroCodec, topic_prefix: str,
) -> None:
    topics = Topics(f"{topic_prefix}-inherit")
    probe.ensure_probe_topics(kafka_bootstrap, topics, partitions=1)
    producer = KafkaProducer(kafka_bootstrap, "inherit-test")
    request = ProbeRequest()
    for index in range(3):  # there before the consumer: a previous owner's, maybe
        probe.send(producer, codec, topics, probe.command(f"before-{index}", request))
    seen: dict[str, bool] = {}
    lock = threading.Lock()

    def handle(envelope: Envelope, lease: Lease) -> bool:
        with lock:
            seen[envelope.task_id] = lease.inherited
        return True

    stop = threading.Event()
    loop = ParallelConsumerLoop(
        ConsumerSettings(bootstrap=kafka_bootstrap, group_id=f"inherit-{uuid.uuid4().hex[:8]}",
                         topics=[topics.step_commands(probe.QUEUE)],
                         dead_letter_topic=topics.dead_letter, client_id="inherit-test",
                         auto_offset_reset="earliest"),
        codec, handle, producer, stop, lambda: int(time.time() * 1000), concurrency=2)
    runner = threading.Thread(target=loop.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        for index in range(2):  # produced while the consumer owns the partition
            probe.send(producer, codec, topics, probe.command(f"after-{index}", request))
        while len(seen) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(15)
    assert seen == {"before-0": True, "before-1": True, "before-2": True,
                    "after-0": False, "after-1": False}

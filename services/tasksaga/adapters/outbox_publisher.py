"""Publishes an orchestrator's outbox records right after their transaction commits.

The orchestrator knows what it just committed: rather than wait for the relay to wake, select
the rows and delete them after its own flush, it hands them here. Each record is produced at
once (in commit order, on one producer: a key's records keep their order), and its row is
deleted once the broker acknowledged it, by ``settle``, in batches. A row is the proof that a
record may not have reached Kafka, so nothing is lost when the process dies anywhere in
between: the relay (outbox_relay.py) sweeps what was left behind, rows older than its sweep
age, and every row at its start. What is then sent twice is deduplicated by message id, as
any redelivery.

Deleting rides on the next transaction: the orchestrator's next batch takes the acknowledged
row ids (``take_acknowledged``) and deletes them with its own writes, in the round trip and the
commit it makes anyway. The settler thread deletes only what no batch took for a while (an
idle process), committing asynchronously (``synchronous_commit = off``). Either way a delete
lost in a crash only brings its row back, which is sent again — never a record lost.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping, Sequence

from psycopg_pool import ConnectionPool

from tasksaga.adapters import faults
from tasksaga.adapters.kafka_producer import Delivery, KafkaProducer
from tasksaga.core.ports import OutboxRecord

log = logging.getLogger(__name__)


class OutboxPublisher:
    """Sends committed outbox rows of every shard; ``settle`` deletes the acknowledged ones."""

    def __init__(self, producer: KafkaProducer, pools: Mapping[str, ConnectionPool]) -> None:
        self._producer = producer
        self._pools = dict(pools)
        self._lock = threading.Lock()
        self._acked: dict[str, list[int]] = {shard: [] for shard in self._pools}
        self._acked_any = threading.Event()
        self.failed = 0  # records the broker did not take (their rows wait for the sweep)

    def publish(self, shard: str, rows: Sequence[tuple[int, OutboxRecord]]) -> None:
        """Produce committed rows of ``shard`` (never raises: a row not acknowledged stays)."""
        for row_id, record in rows:
            self._producer.produce_nowait(record.topic, record.key, record.value,
                                          record.headers,
                                          on_settled=functools.partial(self._settled, shard,
                                                                       row_id))

    def _settled(self, shard: str, row_id: int, delivery: Delivery) -> None:
        if delivery.error is not None:
            # Its row stays; the relay's sweep sends it (and dead-letters one the broker
            # refuses for good). Later records of its key may overtake it meanwhile, as any
            # redelivery may; consumers order by version.
            with self._lock:
                self.failed += 1
            log.warning("outbox row %d to %s not acknowledged, left to the relay: %s",
                        row_id, delivery.topic, delivery.error)
            return
        with self._lock:
            self._acked[shard].append(row_id)
        self._acked_any.set()

    def take_acknowledged(self, shard: str) -> list[int]:
        """The row ids of ``shard`` acknowledged so far, for the caller's transaction to delete
        (``give_back`` them should it not commit)."""
        with self._lock:
            ids, self._acked[shard] = self._acked[shard], []
        if ids:
            faults.hit("after_produce_before_delete")  # chaos suite (R1, R13)
        return ids

    def give_back(self, shard: str, row_ids: Sequence[int]) -> None:
        """Rows a transaction took but did not delete (it rolled back): settled later."""
        if row_ids:
            with self._lock:
                self._acked[shard].extend(row_ids)
            self._acked_any.set()

    def settle(self) -> int:
        """Delete the rows acknowledged so far, one statement per shard; how many."""
        with self._lock:
            taken = {shard: ids for shard, ids in self._acked.items() if ids}
            self._acked = {shard: [] for shard in self._pools}
            self._acked_any.clear()
        if not taken:
            return 0
        faults.hit("after_produce_before_delete")  # chaos suite (R1, R13); no-op unless armed
        settled = 0
        for shard, ids in taken.items():
            try:
                with self._pools[shard].connection() as conn, conn.transaction():
                    conn.execute("SET LOCAL synchronous_commit = off")
                    conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (ids,))
                settled += len(ids)
            except Exception:
                # The rows stay: the relay's sweep sends them again (a duplicate, deduped).
                log.exception("deleting %d published outbox rows of shard %s failed", len(ids),
                              shard)
        return settled

    def close(self, timeout_s: float = 10.0) -> int:
        """At shutdown, once no batch runs any more: wait for the reports of every record sent
        (up to ``timeout_s``), then delete the rows acknowledged; how many. The last batches
        of a drain publish after their commit, so their reports arrive after the settler's
        last round: without this their rows stayed, and the next start's relay sent every one
        of them again (a command run twice in a rolling restart)."""
        self._producer.close(timeout_s)
        return self.settle()

    def run_settler(self, stop: threading.Event, idle_s: float = 0.25) -> None:
        """Settle what the batches left: rows acknowledged ``idle_s`` ago or more (a busy
        process's next batch deletes them first, at no cost of its own)."""
        while not stop.is_set():
            if self._acked_any.wait(0.5) and not stop.wait(idle_s):
                self.settle()
        self.settle()

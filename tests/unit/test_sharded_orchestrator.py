"""The orchestrator on a store spread over two shards: each task's transaction is on its own
shard, a batch spanning shards commits per shard, and the timer loop fires on every shard."""

from __future__ import annotations

import uuid

import pytest

from tasksaga.core import RetryPolicy
from tasksaga.core.envelope import Envelope
from tasksaga.core.shards import ShardMap
from tasksaga.core.state import StepStatus
from tasksaga.testing import SagaTestRun
from tests.unit.sagas import Req, linear

SHARDS = ShardMap.even(["alpha", "beta"])


def task_on(shard: str) -> str:
    while True:
        task_id = f"t-{uuid.uuid4()}"
        if SHARDS.shard_of(task_id) == shard:
            return task_id


def test_tasks_on_both_shards_retry_on_their_shards_timers_and_complete() -> None:
    run = SagaTestRun(linear(2, retry=RetryPolicy(max_retries=1, delay_ms=1_000)),
                      shards=SHARDS)
    run.faults.fail("S1", times=1)  # each task's first S1 attempt fails: a retry timer
    tasks = [run.submit(Req(), task_id=task_on(shard), settle=False) for shard in SHARDS.shards]
    for task in tasks:
        assert task.step_status("S1") is StepStatus.RETRY_SCHEDULED
    assert {SHARDS.shard_of(t.task_id) for _, t in run.store.timers()} == {"alpha", "beta"}
    run.advance(ms=1_000)
    for task in tasks:
        task.assert_completed()
        assert [a for s, a in task.dispatched if s == "S1"] == [1, 2]


def test_a_batch_with_tasks_of_both_shards_is_written_one_transaction_per_shard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = SagaTestRun(linear(1), shards=SHARDS)
    held: list[Envelope] = []
    with monkeypatch.context() as patch:  # hold the submissions, to hand them over as a batch
        patch.setattr(run.orchestrator, "handle", held.append)
        tasks = [run.submit(Req(), task_id=task_on(shard), settle=False)
                 for shard in ("alpha", "beta", "alpha")]
    assert len(held) == 3 and not run.store.stream_ids()
    run.orchestrator.handle_batch(held)
    assert sorted(run.store.stream_ids()) == sorted(t.task_id for t in tasks)
    run.run_until_settled(*(t.task_id for t in tasks))
    for task in tasks:
        task.assert_completed()

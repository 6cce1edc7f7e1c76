"""Two event store shards on two PostgreSQL clusters, the whole system running: kill -9 of the
orchestrator with tasks in flight on both shards, and every task still finishes, once, on its
own shard; the API lists them all from both."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tasksaga.core.shards import ShardMap
from tests.e2e.checks import log_problems
from tests.e2e.conftest import System, running_system
from tests.e2e.orchestrator_kill import submit_killing_the_orchestrator
from tests.integration.shard_support import second_cluster, shard_urls

TASKS = 16
SHARDS = ShardMap.even(["pg1", "pg2"])


@pytest.fixture(scope="module")
def sharded(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[tuple[System, dict[str, str]]]:
    stack_dir = Path(tmp_path_factory.mktemp("e2e-pg-shard")) / "stack"
    with second_cluster(stack_dir) as second_url, \
            shard_urls({"pg1": stack_env["TASKSAGA_DATABASE_URL"],
                        "pg2": second_url}) as urls:
        shards = ";".join(f"{name}={url}" for name, url in urls.items())
        # The first shard is also the database of the rows of no task (and the notifier's).
        with running_system(stack_env, TASKSAGA_SHARDS=shards,
                            TASKSAGA_DATABASE_URL=urls["pg1"]) as system:
            yield system, urls


def _streams(url: str, task_ids: list[str]) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT stream_id FROM streams WHERE stream_id = ANY(%s)",
                            (task_ids,)).fetchall()
    return {row[0] for row in rows}


def test_a_killed_orchestrator_resumes_tasks_on_both_shards_each_ending_once(
    sharded: tuple[System, dict[str, str]],
) -> None:
    system, urls = sharded
    accepted, _ = submit_killing_the_orchestrator(system, TASKS, kill_after=4, workers=4)
    time.sleep(0.5)
    system.services.start("orchestrator")
    statuses = [system.wait_terminal(task_id, timeout_s=120) for task_id in accepted]

    assert [s["status"] for s in statuses] == ["Completed"] * TASKS
    by_shard = {name: [t for t in accepted if SHARDS.shard_of(t) == name] for name in urls}
    assert all(by_shard.values()), f"every shard should hold some of the tasks: {by_shard}"
    for name, url in urls.items():
        assert _streams(url, accepted) == set(by_shard[name])  # on its own shard only
        assert log_problems(url, by_shard[name]) == []
    # The merged list, paged by its cursor: each task once (other modules' tasks of the first
    # shard's database come in between).
    listed: list[str] = []
    cursor: str | None = None
    for _ in range(200):
        params = {"task_type": "CreateZip", "limit": "20", **({"before": cursor} if cursor
                                                                else {})}
        reply = system.client.get("/tasks", params=params)
        assert reply.status_code == 200, reply.text
        listed += [t["task_id"] for t in reply.json()["tasks"]]
        cursor = reply.json()["next_cursor"]
        if cursor is None or set(accepted) <= set(listed):
            break
    assert set(accepted) <= set(listed) and len(listed) == len(set(listed))

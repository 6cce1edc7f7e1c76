# mypy: disable-error-code="import-untyped,untyped-decorator"
"""The Celery application of the benchmark: no-op steps chained per task (the worker's -A).

Durability settings: acks late (a task is acknowledged after it ran, so a crash redelivers
it), prefetch 1, Redis with appendonly + appendfsync always (every write is fsynced before
Redis answers), results of chord headers in the same Redis.

A task's steps form a chain; each step adds its (start, end) to the dict the chain passes
along. The last step of a failing task raises; its ``link_error`` errback starts the
compensating chain (no-op undo steps, newest first). The last task of either chain pushes the
task's outcome to a Redis list the generator pops (its "task finished" notification).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
from celery import Celery

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:16379/0")
DONE_KEY = "bench:done"

app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue="bench",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_allow_error_cb_on_chord_header=False,
)
_redis: redis.Redis | None = None


def _client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(REDIS_URL)
    return _redis


class BenchFailure(Exception):
    """The last step of a failing task, on purpose."""


def _report(task_id: str, outcome: str, detail: Any) -> None:
    _client().rpush(DONE_KEY, json.dumps({"id": task_id, "outcome": outcome, "detail": detail}))


@app.task(name="bench.step")
def step(times: dict[str, list[float]], name: str, fail: bool, task_id: str, last: bool,
         data: str) -> dict[str, list[float]]:
    start = time.time()
    if fail:
        raise BenchFailure(f"bench: step {name} fails on purpose")
    times = {**times, name: [start, time.time()]}
    if last:
        _report(task_id, "completed", times)
    return times


@app.task(name="bench.branch", ignore_result=False)
def branch(times: dict[str, list[float]], name: str, data: str) -> dict[str, list[float]]:
    start = time.time()
    return {**times, name: [start, time.time()]}


@app.task(name="bench.join")
def join(parts: list[dict[str, list[float]]], name: str, task_id: str,
         data: str) -> dict[str, list[float]]:
    start = time.time()
    times: dict[str, list[float]] = {}
    for part in parts:
        times.update(part)
    times[name] = [start, time.time()]
    _report(task_id, "completed", times)
    return times


@app.task(name="bench.undo")
def undo(undone: list[str], name: str, task_id: str, last: bool) -> list[str]:
    undone = [*undone, name]
    if last:
        _report(task_id, "failed", undone)
    return undone


@app.task(name="bench.compensate")
def compensate(request: Any, exc: Any, traceback: Any, task_id: str, done: list[str]) -> None:
    """Errback of a failed last step: start the compensating chain (reverse order)."""
    from celery import chain

    names = list(reversed(done))
    signatures = [undo.si([], names[0], task_id, len(names) == 1)]
    signatures += [undo.s(name, task_id, index == len(names) - 1)
                   for index, name in enumerate(names) if index > 0]
    chain(*signatures).apply_async()

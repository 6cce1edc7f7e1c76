"""No capable worker connected: the status, a log line and a gauge say which steps wait."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from tasksaga.adapters.capable_workers import (
    CapabilityWatch,
    ConsumerGroupMembers,
    worker_group_of,
)
from tasksaga.api.capability_status import with_capability_waits
from tasksaga.core.capabilities import Route
from tests.unit.test_capabilities import clip_task

FFMPEG_GPU = Route("video", frozenset({"ffmpeg", "gpu"}))


class Future:
    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self, timeout: float | None = None) -> Any:
        if isinstance(self._value, Exception):
            raise self._value
        return self._value


class FakeAdmin:
    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    def describe_consumer_groups(self, groups: list[str], request_timeout: float) -> dict[str, Any]:
        self.asked += groups
        return {groups[0]: Future(self.answers.pop(0))}


def group(members: int) -> SimpleNamespace:
    return SimpleNamespace(members=[object()] * members)


def test_the_members_of_a_routes_group_are_counted_and_cached() -> None:
    now = [0.0]
    admin = FakeAdmin(group(0), group(2))
    members = ConsumerGroupMembers("unused", worker_group_of("p", "worker"), ttl_s=5.0,
                                   monotonic=lambda: now[0], admin=admin)
    assert members(FFMPEG_GPU) == 0
    assert members(FFMPEG_GPU) == 0  # cached
    now[0] = 6.0
    assert members(FFMPEG_GPU) == 2
    assert admin.asked == ["p-worker-video.cap-ffmpeg-gpu"] * 2


def test_a_group_kafka_cannot_describe_is_unknown_not_empty() -> None:
    failure = KafkaException(KafkaError(KafkaError.NOT_COORDINATOR))
    members = ConsumerGroupMembers("unused", worker_group_of("p", "worker"),
                                   admin=FakeAdmin(failure, failure))
    assert members(FFMPEG_GPU) is None


def test_the_watch_logs_once_when_no_capable_worker_consumes_and_when_one_returns(
        caplog: pytest.LogCaptureFixture) -> None:
    counts = {FFMPEG_GPU: 0}
    watch = CapabilityWatch([Route("video"), FFMPEG_GPU], counts.__getitem__)
    with caplog.at_level(logging.INFO, "tasksaga.adapters.capable_workers"):
        assert watch.check() == [FFMPEG_GPU]
        assert watch.check() == [FFMPEG_GPU]
        counts[FFMPEG_GPU] = 1
        assert watch.check() == []
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "no worker with capabilities ffmpeg, gpu consumes queue video: its steps requiring "
        "them wait for one (start a worker with TASKSAGA_WORKER_CAPABILITIES=ffmpeg,gpu)",
        "1 worker(s) with capabilities ffmpeg, gpu now consume queue video"]


def status(step_status: str) -> dict[str, Any]:
    return {"steps": [{"step": "Probe", "status": "Completed"},
                      {"step": "Render", "status": step_status}]}


def test_a_status_marks_a_queued_step_whose_capability_group_is_empty() -> None:
    document = with_capability_waits(status("Running"), clip_task(), lambda route: 0)
    assert document["steps"][1]["waiting_for_capabilities"] == ["ffmpeg", "gpu"]
    assert "waiting_for_capabilities" not in document["steps"][0]


@pytest.mark.parametrize(("step_status", "members"), [("Running", 1), ("Running", None),
                                                      ("Pending", 0), ("Completed", 0)])
def test_a_status_does_not_mark_a_step_served_unknown_or_not_queued(
        step_status: str, members: int | None) -> None:
    document = with_capability_waits(status(step_status), clip_task(), lambda route: members)
    assert "waiting_for_capabilities" not in document["steps"][1]

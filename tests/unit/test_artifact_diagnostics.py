"""Diagnostics of artifacts: TS190 (consumed, never produced earlier), TS191 (two producers of
one name in a stage), TS192 (bad name), TS193 (a name listed twice in produces=)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tasksaga.core import TaskDefinition
from tasksaga.core.diagnostics import diagnose


class Req(BaseModel):
    note: str = ""


def handler(ctx: Any) -> None:
    return None


def codes(task: TaskDefinition) -> list[str]:
    return [d.code for d in diagnose(task)]


def test_a_consumed_artifact_produced_by_an_earlier_step_is_clean() -> None:
    task = TaskDefinition("Media", queue="q", request=Req)
    task.step("Fetch", order=1, produces=["source"])(handler)
    task.step("Transcode", order=2, produces=["rendition"], consumes=["source"])(handler)
    assert codes(task) == []
    assert task.get_step("Transcode").consumes == ("source",)
    assert task.get_step("Transcode").produces == ("rendition",)


def test_consuming_an_artifact_no_earlier_step_produces_is_ts190() -> None:
    task = TaskDefinition("Media", queue="q", request=Req)
    task.step("Transcode", order=1, consumes=["source"])(handler)
    task.step("Fetch", order=2, produces=["source"])(handler)  # too late
    found = [d for d in diagnose(task) if d.code == "TS190"]
    assert len(found) == 1 and "'source'" in found[0].message


def test_a_step_of_the_same_stage_does_not_count_as_earlier_for_ts190() -> None:
    task = TaskDefinition("Media", queue="q", request=Req)
    task.step("Fetch", order=1, group="g", produces=["source"])(handler)
    task.step("Transcode", order=1, group="g", consumes=["source"])(handler)
    assert "TS190" in codes(task)


def test_two_producers_of_one_name_in_a_parallel_stage_is_ts191() -> None:
    task = TaskDefinition("Media", queue="q", request=Req)
    task.step("A", order=1, group="g", produces=["thumb"])(handler)
    task.step("B", order=1, group="g", produces=["thumb"])(handler)
    found = [d for d in diagnose(task) if d.code == "TS191"]
    assert len(found) == 1 and "'A', 'B'" in found[0].message


def test_a_name_that_is_not_a_plain_word_is_ts192_and_a_repeated_one_ts193() -> None:
    task = TaskDefinition("Media", queue="q", request=Req)
    task.step("A", order=1, produces=["../etc", "x", "x"])(handler)
    assert codes(task).count("TS192") == 1
    assert codes(task).count("TS193") == 1

"""Capabilities: a step requiring some is routed to a topic only capable workers consume."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tasksaga.adapters.topics import all_topic_names
from tasksaga.adapters.wire import Topics
from tasksaga.core.capabilities import (
    MissingCapabilities,
    Route,
    capability_set,
    capability_suffix,
    plan_subscriptions,
)
from tasksaga.core.context import StepContext
from tasksaga.core.definition import DefinitionError, TaskDefinition
from tasksaga.core.registry import TaskRegistry
from tasksaga.core.state import TaskStatus
from tasksaga.testing import SagaTestRun
from tasksaga.worker.capabilities import worker_capabilities
from tasksaga.worker.settings import WorkerSettings


class Clip(BaseModel):
    name: str


class Done(BaseModel):
    ok: bool = True


def clip_task(requires: object = ("ffmpeg", "gpu")) -> TaskDefinition:
    task = TaskDefinition("CapClip", queue="video", request=Clip)

    @task.step("Probe", order=1)
    def probe(ctx: StepContext[Clip]) -> Done:
        return Done()

    @task.step("Render", order=2, requires=requires)  # type: ignore[arg-type]
    def render(ctx: StepContext[Clip]) -> Done:
        return Done()

    return task


def test_the_topic_suffix_is_sorted_and_deterministic() -> None:
    assert capability_suffix({"gpu", "ffmpeg"}) == ".cap-ffmpeg-gpu"
    assert capability_suffix(["ffmpeg", "gpu", "ffmpeg"]) == ".cap-ffmpeg-gpu"
    assert capability_suffix(()) == ""
    assert Topics("p").step_commands("video", {"gpu", "ffmpeg"}) == \
        "p.step-commands.video.cap-ffmpeg-gpu"
    assert Topics("p").step_commands("video") == "p.step-commands.video"
    assert Route("video", frozenset({"gpu"})).name == "video.cap-gpu"


@pytest.mark.parametrize("bad", ["FFmpeg", "ff-mpeg", "", "1gpu", "a+b", "x" * 33])
def test_an_invalid_capability_name_is_refused_with_the_rule(bad: str) -> None:
    with pytest.raises(ValueError, match=r"invalid capability name.*lowercase letters"):
        capability_set(["gpu", bad])


def test_a_step_requiring_an_invalid_capability_is_diagnosed_ts195() -> None:
    with pytest.raises(DefinitionError) as raised:
        TaskRegistry([clip_task(requires={"GPU!"})])
    assert "TS195" in str(raised.value) and "'GPU!'" in str(raised.value)


def test_a_single_capability_may_be_given_as_a_string() -> None:
    assert clip_task(requires="ffmpeg").get_step("Render").requires == {"ffmpeg"}


def test_the_routes_and_topics_of_a_definition_include_its_capability_sets() -> None:
    registry = TaskRegistry([clip_task()])
    assert registry.routes() == {Route("video"), Route("video", frozenset({"ffmpeg", "gpu"}))}
    names = all_topic_names(Topics("p"), registry.queues(), registry.routes())
    assert names[-2:] == ["p.step-commands.video", "p.step-commands.video.cap-ffmpeg-gpu"]


def test_the_orchestrator_sends_a_capable_step_to_its_capability_topic() -> None:
    run = SagaTestRun(clip_task())
    assert run.submit(Clip(name="a")).status is TaskStatus.COMPLETED
    by_step = {run.codec.decode(r.value).payload.step: r.topic
               for r in run.bus.records() if r.topic.startswith("test.step-commands.")}
    assert by_step == {"Probe": "test.step-commands.video",
                       "Render": "test.step-commands.video.cap-ffmpeg-gpu"}


ROUTES = [Route("video"), Route("video", frozenset({"ffmpeg"})), Route("zip")]


def test_a_worker_of_every_queue_leaves_the_routes_it_cannot_serve() -> None:
    plan = plan_subscriptions(ROUTES, None, offered=set())
    assert plan.served == (Route("video"), Route("zip"))
    assert plan.left == (Route("video", frozenset({"ffmpeg"})),)
    assert plan_subscriptions(ROUTES, None, {"ffmpeg"}).served == tuple(sorted(ROUTES))


def test_a_worker_told_to_serve_a_queue_it_lacks_capabilities_for_refuses() -> None:
    with pytest.raises(MissingCapabilities,
                       match="queue 'video' has steps requiring capabilities ffmpeg: this "
                             "worker lacks ffmpeg"):
        plan_subscriptions(ROUTES, ["video"], offered={"gpu"})
    assert plan_subscriptions(ROUTES, ["zip"], offered=()).served == (Route("zip"),)


def test_a_worker_detects_ffmpeg_on_its_path_and_adds_the_listed_capabilities() -> None:
    on_path = {"ffmpeg": "/usr/bin/ffmpeg"}.get
    assert worker_capabilities(["gpu"], which=on_path) == {"ffmpeg", "gpu"}
    assert worker_capabilities(["gpu"], detect=False, which=on_path) == {"gpu"}
    assert worker_capabilities([], which=lambda _program: None) == frozenset()


def test_a_worker_listing_ffmpeg_without_it_on_its_path_refuses() -> None:
    with pytest.raises(MissingCapabilities, match="lists ffmpeg, but 'ffmpeg' is not on"):
        worker_capabilities(["ffmpeg", "gpu"], which=lambda _program: None)


def test_the_worker_settings_read_a_comma_separated_capability_list(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKSAGA_WORKER_CAPABILITIES", "gpu, ffmpeg")
    monkeypatch.setenv("TASKSAGA_WORKER_DETECT_CAPABILITIES", "false")
    settings = WorkerSettings(kafka_bootstrap="k:9092", database_url="postgresql://x")
    assert settings.worker_capabilities == ["gpu", "ffmpeg"]
    assert settings.worker_detect_capabilities is False


def test_every_cell_of_a_matrix_goes_to_the_capability_topic_of_its_step() -> None:
    task = TaskDefinition("CapMatrix", queue="video", request=Clip)

    @task.for_each("Encode", order=1, matrix={"height": [720, 1080], "codec": ["h264", "av1"]},
                   requires={"gpu"})
    def encode(ctx: StepContext[Clip]) -> Done:
        return Done()

    assert Route("video", frozenset({"gpu"})) in task.routes()
    run = SagaTestRun(task)
    assert run.submit(Clip(name="a")).status is TaskStatus.COMPLETED
    topics = {run.codec.decode(r.value).payload.step: r.topic
              for r in run.bus.records() if r.topic.startswith("test.step-commands.")}
    assert topics == {f"Encode[{i}]": "test.step-commands.video.cap-gpu" for i in range(4)}

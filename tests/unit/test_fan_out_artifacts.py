"""for_each instances publish artifacts of their own: instance ``i``'s ``rendition`` reaches
consumers as ``rendition[i]``, and compensating the instances releases each one's."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

from pydantic import BaseModel

from tasksaga.core import TaskDefinition
from tasksaga.core.artifacts import BUCKET
from tasksaga.core.diagnostics import diagnose
from tasksaga.core.state import TaskStatus
from tasksaga.testing import SagaTestRun


class Req(BaseModel):
    fail_last: bool = False


class Opened(BaseModel):
    contents: dict[str, str]


def cell_bytes(cell: dict[str, Any]) -> bytes:
    return json.dumps(cell, sort_keys=True).encode()


def render(ctx: Any) -> None:
    ctx.artifacts.publish("rendition", io.BytesIO(cell_bytes(ctx.item)))


def gather(ctx: Any) -> Opened:
    return Opened(contents={name: b"".join(ctx.artifacts.open(name)).decode()
                            for name in ctx.artifacts.names("rendition")})


def notify(ctx: Any) -> None:
    if ctx.request.fail_last:
        raise RuntimeError("notify refused")


def renditions() -> TaskDefinition:
    task = TaskDefinition("Renditions", queue="q", request=Req)
    task.for_each("Render", order=1, matrix={"height": [720, 1080], "codec": ["h264", "av1"]},
                  produces=["rendition"])(render)
    task.step("Gather", order=2, consumes=["rendition"])(gather)
    task.step("Notify", order=3)(notify)
    return task


CELLS = [{"height": h, "codec": c} for h in (720, 1080) for c in ("h264", "av1")]


def test_a_later_step_opens_the_artifact_of_every_matrix_cell_by_instance_index() -> None:
    run = SagaTestRun(renditions())
    task = run.submit(Req())
    task.assert_completed()
    opened = task.data("Gather", Opened).contents
    assert list(opened) == [f"rendition[{i}]" for i in range(4)]
    assert {json.loads(v)["height"] for v in opened.values()} == {720, 1080}
    for index in range(4):  # each instance holds its own
        sha = hashlib.sha256(opened[f"rendition[{index}]"].encode()).hexdigest()
        assert run.artifact_refs.holders(sha) == {f"{task.state.task_id}:Render[{index}]"}
    assert sorted(opened.values()) == sorted(cell_bytes(c).decode() for c in CELLS)


def test_compensating_the_instances_releases_every_cells_artifact() -> None:
    run = SagaTestRun(renditions())
    task = run.submit(Req(fail_last=True))
    assert task.status is TaskStatus.FAILED
    for cell in CELLS:
        assert run.artifact_refs.holders(hashlib.sha256(cell_bytes(cell)).hexdigest()) == set()
    assert run.objects.keys(BUCKET) == []


class Sizes(BaseModel):
    size: int


def test_each_instance_opens_what_an_earlier_step_published() -> None:
    task = TaskDefinition("PerInstance", queue="q", request=Req)

    @task.step("Fetch", order=1, produces=["source"])
    def fetch(ctx: Any) -> None:
        ctx.artifacts.publish("source", io.BytesIO(b"x" * 10))

    @task.for_each("Measure", order=2, items=lambda ctx: [1, 2], consumes=["source"])
    def measure(ctx: Any) -> Sizes:
        return Sizes(size=len(b"".join(ctx.artifacts.open("source"))) * ctx.item)

    run = SagaTestRun(task)
    done = run.submit(Req())
    done.assert_completed()
    assert [done.data(f"Measure[{i}]", Sizes).size for i in range(2)] == [10, 20]


def test_for_each_artifacts_are_checked_like_a_steps() -> None:
    task = TaskDefinition("Checked", queue="q", request=Req)
    task.step("Early", order=1, consumes=["rendition"])(gather)
    task.for_each("Render", order=2, items=lambda ctx: [1], produces=["rendition"])(render)
    task.step("Late", order=3, consumes=["rendition[0]"])(gather)
    codes = sorted(d.code for d in diagnose(task) if d.code.startswith("TS19"))
    assert codes == ["TS190", "TS192"]  # Early runs before it; Late names one instance's
    assert not [d for d in diagnose(renditions()) if d.code.startswith("TS19")]

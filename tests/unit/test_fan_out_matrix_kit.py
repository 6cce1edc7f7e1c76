"""A matrix fan-out in process (tasksaga.testing): every cell runs as an instance with its cell
as its item; one cell failing for good compensates the others."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tasksaga.core import NonRetryableError, SagaContext, StepContext, TaskDefinition
from tasksaga.core.diagnostics import diagnose
from tasksaga.core.fingerprint import fingerprint, graph_changes, step_graph
from tasksaga.core.state import StepStatus, TaskStatus
from tasksaga.testing import SagaTestRun


class TranscodeRequest(BaseModel):
    video: str
    heights: list[int]
    fail_cell: str | None = None  # "height=1080,codec=av1": that rendition cannot be made


class Rendition(BaseModel):
    key: str


class Manifest(BaseModel):
    renditions: list[str]


def renditions(ctx: SagaContext[TranscodeRequest]) -> dict[str, list[Any]]:
    return {"height": ctx.request.heights, "codec": ["h264", "av1"]}


def transcoding(matrix: Any) -> TaskDefinition:
    task = TaskDefinition("Transcode", queue="video", request=TranscodeRequest)

    @task.step("Probe", order=1)
    def probe(ctx: StepContext[TranscodeRequest]) -> None:
        return None

    task.compensation("Probe")(lambda ctx, data: None)

    @task.for_each("Render", order=2, matrix=matrix)
    def render(ctx: StepContext[TranscodeRequest]) -> Rendition:
        cell = ctx.item
        label = f"height={cell['height']},codec={cell['codec']}"
        if label == ctx.request.fail_cell:
            raise NonRetryableError(f"{label} cannot be rendered")
        return Rendition(key=f"{ctx.request.video}/{cell['height']}p.{cell['codec']}")

    task.compensation("Render")(lambda ctx, data: None)

    @task.step("Publish", order=3)
    def publish(ctx: StepContext[TranscodeRequest]) -> Manifest:
        return Manifest(renditions=[r.key for r in ctx.results_of("Render", Rendition)])

    return task


def test_a_static_two_by_two_matrix_runs_four_cells_and_gathers_them_in_cell_order() -> None:
    task_definition = transcoding({"height": [720, 1080], "codec": ["h264", "av1"]})
    assert [d.code for d in diagnose(task_definition) if d.severity == "error"] == []
    run = SagaTestRun(task_definition)
    task = run.submit(TranscodeRequest(video="v1", heights=[]))  # heights: the request's axis
    task.assert_completed()
    assert task.data("Publish", Manifest).renditions == [
        "v1/720p.h264", "v1/720p.av1", "v1/1080p.h264", "v1/1080p.av1"]
    assert [s for s, _ in task.dispatched if s.startswith("Render[")] == [
        f"Render[{i}]" for i in range(4)]
    task.assert_audit_contains("step Render expanded into 4 instances")


def test_a_cell_failing_for_good_compensates_the_cells_that_completed() -> None:
    run = SagaTestRun(transcoding(renditions))
    task = run.submit(TranscodeRequest(video="v2", heights=[720, 1080],
                                       fail_cell="height=1080,codec=av1"))
    task.assert_status(TaskStatus.FAILED)
    assert task.step_status("Render") is StepStatus.FAILED
    assert task.step_status("Render[3]") is StepStatus.FAILED
    assert task.compensation_order == ["Render[2]", "Render[1]", "Render[0]", "Probe"]
    task.assert_audit_contains(
        "step Render[3] failed (attempt 1): NonRetryableError: height=1080,codec=av1 cannot "
        "be rendered")


def test_a_matrix_from_the_request_that_cannot_expand_fails_its_step_saying_why() -> None:
    run = SagaTestRun(transcoding(renditions))
    task = run.submit(TranscodeRequest(video="v3", heights=[720, 720]))
    task.assert_status(TaskStatus.FAILED)
    task.assert_audit_contains(
        "step Render failed (attempt 1): FanOutItemsError: matrix renditions of step Render: "
        "MatrixError: axis 'height' has 720 twice (values 0 and 1 both read 720): two cells "
        "would be the same; drop one (TS206); no retry")
    assert task.compensation_order == ["Probe"]


def test_changing_a_static_matrix_changes_the_definitions_fingerprint() -> None:
    small = transcoding({"height": [720], "codec": ["h264", "av1"]})
    wider = transcoding({"height": [720, 1080], "codec": ["h264", "av1"]})
    assert fingerprint(small) != fingerprint(wider)
    assert fingerprint(small) == fingerprint(transcoding({"height": [720],
                                                          "codec": ["h264", "av1"]}))
    [change] = graph_changes(step_graph(small), step_graph(wider))
    assert change.startswith("step 'Render': for_each") and "[720, 1080]" in change

"""API-placed custom steps run at submission; a refusal undoes what earlier API steps did."""

from __future__ import annotations

import io

import pytest
from pydantic import BaseModel

from tasksaga.api.api_steps import run_api_steps
from tasksaga.api.submission import SubmissionError
from tasksaga.core import StepContext, TaskDefinition, UploadedFile, UploadStepData
from tasksaga.core.messages import ApiStepResult
from tasksaga.testing import InMemoryObjectStore


class Req(BaseModel):
    files: list[UploadedFile]
    quota_ok: bool = True


class Reservation(BaseModel):
    reservation: str


def build(released: list[str]) -> TaskDefinition:
    task = TaskDefinition("WithApiSteps", queue="q", request=Req)
    task.upload_step("Upload", order=1, bucket="in", source="files")

    @task.api_step("Reserve", order=2)
    def reserve(ctx: StepContext[Req]) -> Reservation:
        return Reservation(reservation=f"r-{ctx.idempotency_key}")

    @task.compensation("Reserve")
    def release(ctx: StepContext[Req], data: Reservation) -> None:
        released.append(data.reservation)

    @task.api_step("CheckQuota", order=3)
    def check(ctx: StepContext[Req]) -> None:
        if not ctx.request.quota_ok:
            raise PermissionError("over quota")

    @task.step("Work", order=4)
    def work(ctx: StepContext[Req]) -> None:
        return None

    return task


def uploaded(store: InMemoryObjectStore) -> tuple[Req, list[ApiStepResult]]:
    store.put_stream("in", "t/a", io.BytesIO(b"abc"))
    file = UploadedFile(bucket="in", key="t/a", filename="a", size=3)
    return Req(files=[file]), [ApiStepResult("Upload", UploadStepData(files=[file])
                                             .model_dump_json())]


def test_api_steps_run_in_order_and_their_data_is_recorded() -> None:
    store, released = InMemoryObjectStore(), list[str]()
    request, uploads = uploaded(store)
    results = run_api_steps(build(released), "t", request, uploads, store)
    assert [r.step for r in results] == ["Upload", "Reserve", "CheckQuota"]
    assert Reservation.model_validate_json(results[1].data_json).reservation == "r-t:Reserve:1"


def test_a_refusing_api_step_undoes_earlier_api_steps_and_uploads() -> None:
    store, released = InMemoryObjectStore(), list[str]()
    request, uploads = uploaded(store)
    refused = request.model_copy(update={"quota_ok": False})
    with pytest.raises(SubmissionError, match=r"CheckQuota.*over quota"):
        run_api_steps(build(released), "t", refused, uploads, store)
    assert released == ["r-t:Reserve:1"]
    assert not store.exists("in", "t/a")



from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from tasksaga.core import StepCondition, TaskDefinition, UploadedFile
from tasksaga.core.definition import DefinitionError
from tasksaga.core.diagnostics import diagnose
from tasksaga.core.registry import TaskRegistry, UnknownTaskType


class Req(BaseModel):
    files: list[UploadedFile] = []
    title: str = ""


def handler(ctx: Any) -> None:
    return None


def codes(task: TaskDefinition) -> list[str]:
    return [d.code for d in diagnose(task)]


def test_a_valid_definition_has_no_diagnostics() -> None:
    task = TaskDefinition("T", queue="q", request=Req)
    task.upload_step("Upload", order=1, bucket="b", source="files")
    task.step("Work", order=2)(handler)
    assert codes(task) == []


def test_duplicate_step_names_are_reported() -> None:
    task = TaskDefinition("T", queue="q", request=Req)
    task.step("Work", order=1)(handler)
    task.step("Work", order=2)(handler)
    assert "TS101" in codes(task)


def test_an_api_step_after_a_worker_step_is_reported() -> None:
    task = TaskDefinition("T", queue="q", request=Req)
    task.step("Work", order=1)(handler)
    task.upload_step("Upload", order=2, bucket="b", source="files")
    assert "TS103" in codes(task)


def test_an_upload_source_that_is_not_a_file_field_is_reported() -> None:
    task = TaskDefinition("T", queue="q", request=Req)
    task.upload_step("Upload", order=1, bucket="b", source="title")
    diagnostics = diagnose(task)
    assert [d.code for d in diagnostics] == ["TS104"]
    assert "'title'" in diagnostics[0].message


def test_a_condition_with_the_wrong_signature_is_reported() -> None:
    task = TaskDefinition("T", queue="q", request=Req)
    def two_arguments(first: Any, second: Any) -> bool:
        return False

    task.step("Work", order=1, condition=StepCondition("never", two_arguments))(handler)  # type: ignore[arg-type]
    assert "TS109" in codes(task)


def test_a_compensation_for_an_unknown_step_is_reported() -> None:
    task = TaskDefinition("T", queue="q", request=Req)
    task.step("Work", order=1)(handler)
    task.compensation("Nope")(lambda ctx, data: None)
    assert codes(task) == ["TS105"]


def test_the_registry_refuses_an_invalid_definition_with_every_problem_listed() -> None:
    task = TaskDefinition("T", queue="q", request=Req)
    with pytest.raises(DefinitionError) as caught:
        TaskRegistry([task])
    assert "TS102" in str(caught.value)


def test_an_unknown_task_type_names_the_known_ones() -> None:
    task = TaskDefinition("Known", queue="q", request=Req)
    task.step("Work", order=1)(handler)
    with pytest.raises(UnknownTaskType, match="known task types: Known"):
        TaskRegistry([task]).get("Other")

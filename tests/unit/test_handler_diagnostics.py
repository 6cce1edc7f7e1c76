"""Mistakes that used to fail only at run time are diagnostics at registration."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tasksaga.core import RetryPolicy, TaskDefinition
from tasksaga.core.diagnostics import diagnose


class Req(BaseModel):
    name: str = ""


class Data(BaseModel):
    value: int = 0


def codes(task: TaskDefinition) -> set[str]:
    return {d.code for d in diagnose(task)}


def task_with(**options: Any) -> TaskDefinition:
    return TaskDefinition("T", queue="q", request=Req, **options)


def test_a_compensation_with_the_wrong_arity_is_reported() -> None:
    task = task_with()

    @task.step("Charge", order=1)
    def charge(ctx: Any) -> Data:
        return Data()

    @task.compensation("Charge")  # type: ignore[arg-type]  # the mistake under test
    def refund(ctx: Any) -> None: ...

    assert "TS120" in codes(task)


def test_a_handler_without_a_return_annotation_is_reported() -> None:
    task = task_with()

    @task.step("Charge", order=1)
    def charge(ctx):  # type: ignore[no-untyped-def]
        return Data()

    assert "TS121" in codes(task)


def test_two_steps_of_one_data_type_are_a_warning() -> None:
    task = task_with()

    @task.step("A", order=1)
    def a(ctx: Any) -> Data:
        return Data()

    @task.step("B", order=2)
    def b(ctx: Any) -> Data:
        return Data()

    found = [d for d in diagnose(task) if d.code == "TS122"]
    assert found and found[0].severity == "warning" and "'A', 'B'" in found[0].message


def test_a_handler_with_extra_required_arguments_is_reported() -> None:
    task = task_with()

    @task.step("A", order=1)  # type: ignore[arg-type]  # the mistake under test
    def a(ctx: Any, amount: int) -> None: ...

    assert "TS123" in codes(task)


def test_a_cap_below_the_delay_is_reported() -> None:
    task = task_with(retry=RetryPolicy(max_retries=2, delay_ms=5000, max_delay_ms=1000))

    @task.step("A", order=1)
    def a(ctx: Any) -> None: ...

    assert "TS124" in codes(task)


def test_max_retries_and_a_policy_together_are_reported() -> None:
    task = task_with(max_retries=3, retry=RetryPolicy(max_retries=1))

    @task.step("A", order=1)
    def a(ctx: Any) -> None: ...

    assert "TS125" in codes(task)


class CardDeclined(Exception):
    pass


def test_a_misspelt_error_name_is_reported_and_classes_are_not() -> None:
    task = task_with()

    @task.step("A", order=1, retry=RetryPolicy(max_retries=1, retry_on=("CardDecliend",),
                                               never_retry_on=CardDeclined))
    def a(ctx: Any) -> None: ...

    found = [d.message for d in diagnose(task) if d.code == "TS126"]
    assert len(found) == 1 and "'CardDecliend'" in found[0]


def test_the_examples_have_no_errors() -> None:
    from tasksaga_examples.video_pipeline import video_transcode
    from tasksaga_examples.zip_archive import create_zip

    for definition in (video_transcode, create_zip):
        assert [d for d in diagnose(definition) if d.severity == "error"] == []


def test_every_name_the_dsl_docs_use_is_importable_from_the_core() -> None:
    import re
    from pathlib import Path

    import tasksaga.core as core

    docs = (Path(__file__).resolve().parents[2] / "docs" / "dsl.md").read_text()
    used = set(re.findall(r"\b(AwaitMode|Backoff|RetryPolicy|Roles|StepCondition|CallbackUrl|"
                          r"NonRetryableError|StepCancelled|Placement|UploadedFile)\b", docs))
    assert used and all(hasattr(core, name) for name in used)
    assert all(hasattr(core, name) for name in core.__all__)

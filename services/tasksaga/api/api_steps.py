"""API-placed custom steps: run at submission, in order, before the task is accepted.

If one fails, the submission is refused and what the earlier API steps did is undone here
(uploads deleted and their artifacts released, compensations run in reverse), so a refused
submission leaves nothing behind.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from tasksaga.api.submission import SubmissionError, release_published
from tasksaga.core.context import StepContext, dump_model
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.messages import ApiStepResult
from tasksaga.core.ports import ObjectStore
from tasksaga.core.request_fields import UploadStepData
from tasksaga.core.steps import StepDef
from tasksaga.worker.artifacts import ArtifactStore

log = logging.getLogger(__name__)


def run_api_steps(
    definition: TaskDefinition, task_id: str, request: BaseModel,
    uploads: list[ApiStepResult], objects: ObjectStore, artifacts: ArtifactStore | None = None,
) -> list[ApiStepResult]:
    done = list(uploads)
    data = {r.step: r.data_json for r in done}
    for step in definition.api_steps():
        if step.upload is not None or step.handler is None:
            continue
        context = _context(definition, task_id, step, request, data, objects)
        try:
            result = step.handler(context)
        except Exception as error:
            undo_api_steps(definition, task_id, request, done, objects, artifacts)
            raise SubmissionError(
                f"API step {step.name!r} refused the submission: {type(error).__name__}: {error}"
            ) from error
        data[step.name] = dump_model(result)
        done.append(ApiStepResult(step.name, data[step.name]))
    return done


def _context(
    definition: TaskDefinition, task_id: str, step: StepDef, request: BaseModel,
    data: dict[str, str], objects: ObjectStore,
) -> StepContext[Any]:
    return StepContext(task_id=task_id, definition=definition, request=request,
                       step_data_json=dict(data), step=step.name, attempt=1,
                       idempotency_key=f"{task_id}:{step.name}:1", objects=objects)


def undo_api_steps(
    definition: TaskDefinition, task_id: str, request: BaseModel, done: list[ApiStepResult],
    objects: ObjectStore, artifacts: ArtifactStore | None = None,
) -> None:
    data = {r.step: r.data_json for r in done}
    for result in reversed(done):
        step = definition.get_step(result.step)
        try:
            if step.upload is not None:
                for file in UploadStepData.model_validate_json(result.data_json).files:
                    objects.delete(file.bucket, file.key)
                release_published([result], task_id, artifacts)
            elif step.compensation is not None and step.data_type is not None:
                context = _context(definition, task_id, step, request, data, objects)
                step.compensation(context, step.data_type.model_validate_json(result.data_json))
        except Exception:
            log.exception("could not undo API step %s of refused task %s", step.name, task_id)

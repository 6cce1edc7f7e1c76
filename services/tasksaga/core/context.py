"""What user code sees: typed request and typed data of earlier steps.

``SagaContext`` is pure (conditions and the response builder run in the orchestrator's decide);
``StepContext`` adds what a handler on a worker needs: object storage, an idempotency key,
cancellation and heartbeats.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from tasksaga.core.artifacts import ArtifactAccess
from tasksaga.core.ports import CancellationSignal, ObjectStore

if TYPE_CHECKING:
    from tasksaga.core.definition import TaskDefinition

RequestT = TypeVar("RequestT", bound=BaseModel)
DataT = TypeVar("DataT", bound=BaseModel)


class StepDataMissing(LookupError):
    """Asked for the data of a step that has not completed (or has no data type)."""


@dataclass(frozen=True)
class SagaContext(Generic[RequestT]):
    task_id: str
    definition: TaskDefinition
    request: RequestT
    step_data_json: Mapping[str, str]

    def data(self, data_type: type[DataT]) -> DataT:
        """The data of the completed step whose declared data type is ``data_type``."""
        step = self.definition.step_for_data_type(data_type)
        return self.data_of(step.name, data_type)

    def data_of(self, step_name: str, data_type: type[DataT]) -> DataT:
        return data_type.model_validate_json(self._raw(step_name))

    def has_data(self, step_name: str) -> bool:
        return step_name in self.step_data_json

    def results_of(self, step_name: str, data_type: type[DataT]) -> list[DataT]:
        """The results of for_each step ``step_name``: the data of its completed instances,
        in item order (every item for ALL; the successes for ANY and QUORUM)."""
        raw = self.data_of_list(step_name)
        return [data_type.model_validate(entry) for entry in raw]

    def data_of_list(self, step_name: str) -> list[Any]:
        value = json.loads(self._raw(step_name))
        if not isinstance(value, list):
            raise StepDataMissing(f"step {step_name!r} is not a for_each step: read its data "
                                  "with data_of")
        return value

    def _raw(self, step_name: str) -> str:
        raw = self.step_data_json.get(step_name)
        if raw is None:
            raise StepDataMissing(
                f"step {step_name!r} of task {self.definition.name!r} has no data here: "
                "read only the data of steps ordered before the current one, and name them "
                "in the step's reads= when it declares one (only those travel with it)"
            )
        return raw


def _no_heartbeat(progress: float | None, message: str | None) -> None:
    return None


@dataclass(frozen=True)
class StepContext(SagaContext[RequestT]):
    step: str = ""
    attempt: int = 1
    idempotency_key: str = ""  # task:step:attempt: unique to this attempt
    objects: ObjectStore | None = None
    cancelled: CancellationSignal | None = None
    heartbeat: Callable[[float | None, str | None], None] = field(default=_no_heartbeat)
    # The lease of this dispatch: larger for every later dispatch of the task. Pass it to a
    # resource that can refuse writes fenced by a larger token (0 for compensations).
    fencing_token: int = 0
    # An instance of a for_each step: its item as JSON, and its index in the items.
    item_json: str | None = None
    item_index: int | None = None
    # The step's artifacts (tasksaga.worker.artifacts): None on a worker without them.
    artifact_access: ArtifactAccess | None = None

    @property
    def artifacts(self) -> ArtifactAccess:
        """Publish the artifacts the step produces, open those it consumes (docs/dsl.md)."""
        if self.artifact_access is None:
            raise RuntimeError(f"step {self.step!r} has no artifacts here: declare produces= or "
                               "consumes= on it, and run it on a worker with object storage")
        return self.artifact_access

    @property
    def item(self) -> Any:
        """This instance's item: a model when the for_each declares one (``item=`` or
        ``items -> list[Model]``), else the JSON value (dict, list, str, number...)."""
        if self.item_json is None:
            raise LookupError(f"step {self.step!r} is not an instance of a for_each step")
        spec = self.definition.get_step(self.step).for_each
        if spec is not None and spec.item_type is not None:
            return spec.item_type.model_validate_json(self.item_json)
        return json.loads(self.item_json)

    def item_as(self, model: type[DataT]) -> DataT:
        """This instance's item, validated as ``model``."""
        if self.item_json is None:
            raise LookupError(f"step {self.step!r} is not an instance of a for_each step")
        return model.model_validate_json(self.item_json)

    @property
    def step_key(self) -> str:
        """task:step, the same for every attempt of the step: key an effect that must happen
        once per step (a payment) by it, since two attempts can both run."""
        return f"{self.task_id}:{self.step}"

    @property
    def store(self) -> ObjectStore:
        if self.objects is None:
            raise RuntimeError("this worker was started without object storage")
        return self.objects

    def is_cancelled(self) -> bool:
        return self.cancelled is not None and self.cancelled.is_set()


def dump_model(model: BaseModel | None) -> str:
    return "{}" if model is None else model.model_dump_json()


def parse_json_object(raw: str) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value

"""Runs one step command on this worker and reports its result.

The result's message id derives from the command's, so executing a redelivered command again
produces a result the orchestrator's inbox recognises as a duplicate.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from tasksaga.adapters import telemetry
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import KafkaProducer, Unprocessable
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.core import messages as msg
from tasksaga.core.context import StepContext, dump_model
from tasksaga.core.definition import StepDef, TaskDefinition, UploadStepData
from tasksaga.core.errors import NonRetryableError, StepCancelled
from tasksaga.core.ports import ObjectStore
from tasksaga.core.registry import TaskRegistry, UnknownTaskType
from tasksaga.worker.cancellation import CancellationBook

log = logging.getLogger(__name__)

Result = msg.StepSucceeded | msg.StepAttemptFailed | msg.CompensationSucceeded \
    | msg.CompensationAttemptFailed


class StepRunner:
    def __init__(
        self,
        registry: TaskRegistry,
        objects: ObjectStore | None,
        producer: KafkaProducer,
        codec: AvroCodec,
        topics: Topics,
        cancellations: CancellationBook,
        now_ms: Callable[[], int],
    ) -> None:
        self._registry = registry
        self._objects = objects
        self._producer = producer
        self._codec = codec
        self._topics = topics
        self._cancellations = cancellations
        self._now_ms = now_ms

    def handle(self, envelope: Envelope) -> None:
        command = envelope.payload
        if isinstance(command, msg.ExecuteStep):
            result: Result = self.execute(command)
        elif isinstance(command, msg.CompensateStep):
            result = self.compensate(command)
        else:
            raise Unprocessable(f"a step worker does not handle {type(command).__name__}")
        self._producer.send_envelope(
            self._codec,
            self._topics.step_results,
            Envelope(
                payload=result,
                message_id=f"{envelope.message_id}:result",
                task_id=command.task_id,
                correlation_id=envelope.correlation_id,
                causation_id=envelope.message_id,
                occurred_at_ms=self._now_ms(),
                task_type=command.task_type,
            ),
        )

    # -- forward -------------------------------------------------------------------------------

    def execute(self, command: msg.ExecuteStep) -> msg.StepSucceeded | msg.StepAttemptFailed:
        def failed(error_type: str, message: str, retryable: bool) -> msg.StepAttemptFailed:
            return msg.StepAttemptFailed(command.task_id, command.step, command.attempt,
                                         error_type, message, retryable,
                                         telemetry.current_trace_id() or None)

        try:
            definition, step = self._lookup(command.task_type, command.step)
        except LookupError as error:
            return failed("UnknownStep", str(error), False)
        if step.handler is None:
            return failed("NoHandler", f"step {step.name!r} has no handler", False)
        key = (command.task_id, command.step, command.attempt)
        signal = self._cancellations.register(key)
        if step.heartbeat_timeout_seconds:
            self._heartbeat(command, None, "started")  # arms the heartbeat deadline
        try:
            context = self._context(definition, command, signal)
            log.info("running %s/%s attempt %d", command.task_id, command.step, command.attempt)
            data = step.handler(context)
        except StepCancelled as error:
            return failed("Cancelled", str(error) or "cancelled", False)
        except (NonRetryableError, ValidationError) as error:
            return failed(type(error).__name__, str(error), False)
        except Exception as error:
            log.warning("step %s/%s failed: %r", command.task_id, command.step, error)
            return failed(type(error).__name__, str(error), True)
        finally:
            self._cancellations.unregister(key)
        if step.data_type is not None and not isinstance(data, step.data_type):
            return failed(
                "WrongStepData",
                f"handler of {step.name!r} returned {type(data).__name__}, "
                f"expected {step.data_type.__name__}",
                False,
            )
        return msg.StepSucceeded(command.task_id, command.step, command.attempt, dump_model(data))

    # -- backward ------------------------------------------------------------------------------

    def compensate(
        self, command: msg.CompensateStep
    ) -> msg.CompensationSucceeded | msg.CompensationAttemptFailed:
        def failed(error_type: str, message: str) -> msg.CompensationAttemptFailed:
            return msg.CompensationAttemptFailed(command.task_id, command.step, command.attempt,
                                                 error_type, message,
                                                 telemetry.current_trace_id() or None)

        try:
            definition, step = self._lookup(command.task_type, command.step)
            context = self._context(definition, command, None)
            data = _step_data(step, command.step_data)
            if step.upload is not None and isinstance(data, UploadStepData):
                for file in data.files:
                    context.store.delete(file.bucket, file.key)
            if step.compensation is not None:
                log.info("compensating %s/%s", command.task_id, command.step)
                step.compensation(context, data)
        except Exception as error:
            log.warning("compensation %s/%s failed: %r", command.task_id, command.step, error)
            return failed(type(error).__name__, str(error))
        return msg.CompensationSucceeded(command.task_id, command.step, command.attempt)

    # -- helpers -------------------------------------------------------------------------------

    def _lookup(self, task_type: str, step_name: str) -> tuple[TaskDefinition, StepDef]:
        try:
            definition = self._registry.get(task_type)
        except UnknownTaskType as error:
            raise LookupError(str(error)) from error
        return definition, definition.get_step(step_name)

    def _context(
        self, definition: TaskDefinition, command: msg.ExecuteStep | msg.CompensateStep,
        signal: Any,
    ) -> StepContext[Any]:
        return StepContext(
            task_id=command.task_id,
            definition=definition,
            request=definition.request_type.model_validate_json(command.request_json),
            step_data_json=command.step_data,
            step=command.step,
            attempt=command.attempt,
            idempotency_key=command.idempotency_key,
            objects=self._objects,
            cancelled=signal,
            heartbeat=lambda progress, message: self._heartbeat(command, progress, message),
        )

    def _heartbeat(
        self, command: msg.ExecuteStep | msg.CompensateStep, progress: float | None,
        message: str | None,
    ) -> None:
        beat = msg.StepHeartbeat(command.task_id, command.step, command.attempt, progress, message)
        self._producer.send_envelope(
            self._codec,
            self._topics.step_results,
            Envelope(payload=beat, message_id=str(uuid.uuid4()), task_id=command.task_id,
                     correlation_id=command.task_id, causation_id=None,
                     occurred_at_ms=self._now_ms(), task_type=command.task_type),
            flush=False,
        )


def _step_data(step: StepDef, step_data: dict[str, str]) -> BaseModel | None:
    raw = step_data.get(step.name)
    if raw is None or step.data_type is None:
        return None
    return step.data_type.model_validate_json(raw)

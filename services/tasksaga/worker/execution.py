"""Running one step on this worker: its handler (or its compensation) in its context, with
its cancellation signal, start report, heartbeats and artifacts; the result as a message.

``StepRunner`` (tasksaga.worker.runner) decides which commands run and delivers the results.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ValidationError

from tasksaga.adapters import telemetry
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_parallel import Lease
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.core import messages as msg
from tasksaga.core.artifacts import ArtifactRef
from tasksaga.core.context import StepContext, dump_model
from tasksaga.core.definition import StepDef, TaskDefinition, UploadStepData
from tasksaga.core.errors import NonRetryableError, StepCancelled
from tasksaga.core.ports import Bus, ObjectStore
from tasksaga.core.registry import TaskRegistry, UnknownTaskType, UnknownVersion
from tasksaga.core.retry import lineage_of
from tasksaga.worker.artifacts import ArtifactStore, StepArtifacts
from tasksaga.worker.cancellation import CancellationBook
from tasksaga.worker.start_reports import StartReports

log = logging.getLogger(__name__)


class StepExecution:
    def __init__(
        self,
        registry: TaskRegistry,
        objects: ObjectStore | None,
        producer: Bus,
        codec: AvroCodec,
        topics: Topics,
        cancellations: CancellationBook,
        now_ms: Callable[[], int],
        stop: threading.Event | None,
        artifacts: ArtifactStore | None,
        start_report_delay_ms: int,
    ) -> None:
        self._registry = registry
        self.start_reports = StartReports(start_report_delay_ms, now_ms)
        self._objects = objects
        self._producer = producer
        self._codec = codec
        self._topics = topics
        self._cancellations = cancellations
        self._now_ms = now_ms
        self._stop = stop or threading.Event()
        self._artifacts = artifacts

    def execute(self, command: msg.ExecuteStep,
                lease: Lease) -> msg.StepSucceeded | msg.StepAttemptFailed:
        return self._execute(command, lease)[0]

    def _execute(self, command: msg.ExecuteStep, lease: Lease,
                 ) -> tuple[msg.StepSucceeded | msg.StepAttemptFailed, bool]:
        """The attempt's result, and whether its cancellation was asked for while it ran."""
        def failed(error_type: str, message: str, retryable: bool,
                   error: BaseException | None = None) -> tuple[msg.StepAttemptFailed, bool]:
            return msg.StepAttemptFailed(command.task_id, command.step, command.attempt,
                                         error_type, message, retryable,
                                         telemetry.current_trace_id() or None,
                                         command.fencing_token,
                                         list(lineage_of(error)) if error else []), False

        try:
            definition, step = self._lookup(command)
        except UnknownVersion as error:  # a worker of this version may come back: retryable
            return failed("VersionNotDeployed", str(error), True)
        except LookupError as error:
            return failed("UnknownStep", str(error), False)
        if step.handler is None:
            return failed("NoHandler", f"step {step.name!r} has no handler", False)
        key = (command.task_id, command.step, command.attempt)
        signal = self._cancellations.register(key)
        lease.on_revoke(signal.set)  # another worker owns the step now: stop
        # The start report: the step timeout (and the heartbeat deadline) count from now,
        # not from the dispatch, so time spent waiting in a backlog does not time it out.
        # Sent only if the step still runs after a moment (start_reports.py).
        self.start_reports.started(key, lambda: self._heartbeat(command, lease, None, None,
                                                                started=True))
        view = self._artifact_view(step, command)
        try:
            context = replace(self._context(definition, command, signal, lease),
                              artifact_access=view)
            log.info("running %s/%s attempt %d", command.task_id, command.step, command.attempt)
            data = step.handler(context)
        except StepCancelled as error:
            return failed("Cancelled", str(error) or "cancelled", False)
        except (NonRetryableError, ValidationError) as error:
            return failed(type(error).__name__, str(error), False, error)
        except BaseException as error:  # SystemExit & co. from user code fail the attempt too
            log.warning("step %s/%s failed: %r", command.task_id, command.step, error)
            return failed(type(error).__name__, str(error), True, error)
        finally:
            self._cancellations.unregister(key)
            self.start_reports.finished(key)
        if step.data_type is not None and not isinstance(data, step.data_type):
            return failed("WrongStepData",
                          f"handler of {step.name!r} returned {type(data).__name__}, "
                          f"expected {step.data_type.__name__}", False)
        try:
            data_json = dump_model(data)
        except Exception as error:  # the same data would fail the same way: no retry
            return failed("ResultEncodingFailed", f"{type(error).__name__}: {error}", False)
        return msg.StepSucceeded(command.task_id, command.step, command.attempt, data_json,
                                 command.fencing_token, view.published if view else {}
                                 ), signal.is_set() and not lease.revoked

    # -- backward ------------------------------------------------------------------------------

    def compensate(
        self, command: msg.CompensateStep
    ) -> msg.CompensationSucceeded | msg.CompensationAttemptFailed:
        try:
            definition, step = self._lookup(command)
            context = self._context(definition, command, None, None)
            data = _step_data(step, command.step_data)
            if step.upload is not None and isinstance(data, UploadStepData):
                for file in data.files:
                    context.store.delete(file.bucket, file.key)
            if step.compensation is not None:
                log.info("compensating %s/%s", command.task_id, command.step)
                step.compensation(context, data)
            self._release_artifacts(command)
        except BaseException as error:
            log.warning("compensation %s/%s failed: %r", command.task_id, command.step, error)
            return msg.CompensationAttemptFailed(
                command.task_id, command.step, command.attempt, type(error).__name__,
                str(error), telemetry.current_trace_id() or None, command.surplus_attempt,
                list(lineage_of(error)))
        return msg.CompensationSucceeded(command.task_id, command.step, command.attempt,
                                         command.surplus_attempt)

    # -- helpers -------------------------------------------------------------------------------

    def _artifact_view(self, step: StepDef, command: msg.ExecuteStep) -> StepArtifacts | None:
        if self._artifacts is None or not (step.produces or step.consumes):
            return None
        # One holder per step, whatever the attempt: its compensation releases it.
        return StepArtifacts(self._artifacts, step, f"{command.task_id}:{command.step}",
                             command.artifacts)

    def _release_artifacts(self, command: msg.CompensateStep) -> None:
        """Compensating a step releases what it published; shared content stays."""
        if not command.artifacts:
            return
        if self._artifacts is None:
            raise RuntimeError(f"step {command.step!r} published artifacts but this worker has "
                               "no artifact store to release them from")
        for raw in command.artifacts.values():
            self._artifacts.release(ArtifactRef.from_json(raw), f"{command.task_id}:{command.step}")

    def _lookup(self, command: msg.ExecuteStep | msg.CompensateStep,
                ) -> tuple[TaskDefinition, StepDef]:
        """The step of the task's own definition version: a worker never runs another
        version's handler for it (a renamed step would not be found, a changed one would
        do something else)."""
        try:
            definition = self._registry.get(command.task_type, command.definition_version)
        except UnknownVersion:
            raise
        except UnknownTaskType as error:
            raise LookupError(str(error)) from error
        return definition, definition.get_step(command.step)

    def _context(
        self, definition: TaskDefinition, command: msg.ExecuteStep | msg.CompensateStep,
        signal: Any, lease: Lease | None,
    ) -> StepContext[Any]:
        token = command.fencing_token if isinstance(command, msg.ExecuteStep) else 0
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
            heartbeat=lambda progress, message: self._heartbeat(command, lease, progress,
                                                                message),
            fencing_token=token,
            item_json=command.item_json,
            item_index=command.item_index,
        )

    def _heartbeat(
        self, command: msg.ExecuteStep | msg.CompensateStep, lease: Lease | None,
        progress: float | None, message: str | None, started: bool = False,
    ) -> None:
        if lease is not None and lease.revoked:
            return  # no longer ours: the new owner's heartbeats count
        token = command.fencing_token if isinstance(command, msg.ExecuteStep) else 0
        beat = msg.StepHeartbeat(command.task_id, command.step, command.attempt, progress,
                                 message, token, started)
        # Fire and forget: a lost heartbeat is covered by the next one (or the step's deadline),
        # and its outcome is its own, never another send's.
        envelope = Envelope(payload=beat, message_id=str(uuid.uuid4()), task_id=command.task_id,
                            correlation_id=command.task_id, causation_id=None,
                            occurred_at_ms=self._now_ms(), task_type=command.task_type)
        self._producer.produce_nowait(self._topics.step_results, command.task_id.encode(),
                                      self._codec.encode(envelope), telemetry.inject_headers())


def _step_data(step: StepDef, step_data: dict[str, str]) -> BaseModel | None:
    raw = step_data.get(step.name)
    if raw is None or step.data_type is None:
        return None
    return step.data_type.model_validate_json(raw)

"""Runs one step command on this worker and reports its result.

The result's message id derives from the command's, so executing a redelivered command again
produces a result the orchestrator's inbox recognises as a duplicate. A result that could not
be sent is sent again (``ResultSender``); the handler never runs twice for one delivery.
Commands not worth running (expired, superseded, already answered: ``CommandGuard``) are
skipped, and a command whose partition was revoked mid-run is neither answered nor committed.
A command with a chain (tasksaga.core.chains) runs its steps one after the other; the offset is
committed after the last. Running one step is ``StepExecution``'s (tasksaga.worker.execution).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from opentelemetry import metrics

from tasksaga.adapters import telemetry
from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_bus import DeliveryFailed, Unprocessable
from tasksaga.adapters.kafka_parallel import Lease
from tasksaga.adapters.wire import Envelope, Topics
from tasksaga.core import messages as msg
from tasksaga.core.chains import chained_command, read_by
from tasksaga.core.fan_out_names import step_label
from tasksaga.core.ports import Bus, ObjectStore
from tasksaga.core.registry import TaskRegistry
from tasksaga.worker.artifacts import ArtifactStore
from tasksaga.worker.cancellation import CancellationBook
from tasksaga.worker.execution import StepExecution
from tasksaga.worker.finished_steps import ChainResume, FinishedSteps, worth_asking
from tasksaga.worker.guard import CommandGuard
from tasksaga.worker.results import (
    DEFAULT_MAX_RESULT_BYTES,
    InFlight,
    ResultSender,
    ResultTooLarge,
)

log = logging.getLogger(__name__)
# What the worker did with each command, by task type, step, kind (execute, compensate) and
# outcome (succeeded, failed, skipped, abandoned); the durations are the orchestrator's.
_COMMANDS = metrics.get_meter("tasksaga.worker").create_counter(
    "tasksaga.worker.commands", description="step commands handled by outcome")


def _count(command: msg.ExecuteStep | msg.CompensateStep, outcome: str) -> None:
    kind = "execute" if isinstance(command, msg.ExecuteStep) else "compensate"
    _COMMANDS.add(1, {"task_type": command.task_type, "step": step_label(command.step),
                      "kind": kind,
                      "outcome": outcome})

Result = msg.StepSucceeded | msg.StepAttemptFailed | msg.CompensationSucceeded \
    | msg.CompensationAttemptFailed


class StepRunner(StepExecution):
    def __init__(
        self,
        registry: TaskRegistry,
        objects: ObjectStore | None,
        producer: Bus,
        codec: AvroCodec,
        topics: Topics,
        cancellations: CancellationBook,
        now_ms: Callable[[], int],
        stop: threading.Event | None = None,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        finished: FinishedSteps | None = None,
        artifacts: ArtifactStore | None = None,
        start_report_delay_ms: int = 0,
        ask_finished_after_ms: int = 0,
    ) -> None:
        super().__init__(registry, objects, producer, codec, topics, cancellations, now_ms, stop,
                         artifacts, start_report_delay_ms)
        self.guard = CommandGuard(now_ms)
        self._finished = finished
        self._ask_finished_after_ms = ask_finished_after_ms
        self.results = ResultSender(producer, codec, topics.step_results, self._stop,
                                    max_result_bytes)
        self.executions = 0  # handler runs (a figure for tests and the chaos suite)
        self.skipped = 0

    def handle(self, envelope: Envelope, lease: Lease) -> bool:
        """Run the command and deliver its result; True when done (commit the offset)."""
        command = envelope.payload
        if not isinstance(command, msg.ExecuteStep | msg.CompensateStep):
            raise Unprocessable(f"a step worker does not handle {type(command).__name__}")
        skip = self.guard.admit(envelope.message_id, command)
        resume = ChainResume(0)
        if skip is None and self._finished is not None and (lease.inherited or worth_asking(
                envelope.occurred_at_ms, self._now_ms(), self._ask_finished_after_ms)):
            resume = self._resume_point(command)
            skip = None if resume.start is not None else resume.reason
            if skip is not None:
                self.guard.answered(envelope.message_id)
        if skip is not None:
            self._skip(command, skip)
            return True
        if isinstance(command, msg.ExecuteStep) and command.then:
            return self._run_chain(envelope, command, lease, resume)
        self.executions += 1
        if isinstance(command, msg.ExecuteStep):
            result: Result = self.execute(command, lease)
        else:
            result = self.compensate(command)
        if lease.revoked:
            log.info("%s/%s attempt %d: partition revoked while running; its new owner "
                     "answers", command.task_id, command.step, command.attempt)
            self.guard.abandoned(envelope.message_id)
            _count(command, "abandoned")
            return False
        _count(command, "succeeded" if isinstance(
            result, msg.StepSucceeded | msg.CompensationSucceeded) else "failed")
        try:
            self._deliver(envelope, command, result, lease)
        except DeliveryFailed as error:
            log.warning("result of %s/%s attempt %d not delivered (%s): left to redelivery",
                        command.task_id, command.step, command.attempt, error.reason)
            self.guard.abandoned(envelope.message_id)
            return False
        self.guard.answered(envelope.message_id)
        return True

    def _skip(self, command: msg.ExecuteStep | msg.CompensateStep, reason: str) -> None:
        self.skipped += 1
        log.info("skipping %s/%s attempt %d: %s", command.task_id, command.step,
                 command.attempt, reason)
        _count(command, "skipped")

    def _resume_point(self, command: msg.ExecuteStep | msg.CompensateStep) -> ChainResume:
        """What is left to run of the command, by the projections (all of it: start 0)."""
        assert self._finished is not None
        try:
            if isinstance(command, msg.ExecuteStep) and command.then:
                return self._finished.resume_chain(command)
            reason = self._finished.why_finished(command)
        except Exception as error:  # the database is down: run it, as before the check
            log.warning("could not check whether %s/%s is finished: %s", command.task_id,
                        command.step, error)
            return ChainResume(0)
        return ChainResume(0) if reason is None else ChainResume(None, reason=reason)

    def _run_chain(self, envelope: Envelope, command: msg.ExecuteStep, lease: Lease,
                   resume: ChainResume) -> bool:
        """Run the command's step, then the steps of its chain while each succeeds (from where
        a redelivered command resumes): each success says whether the next step started
        (tasksaga.core.chains); the offset is committed once the last result is sent."""
        names = [command.step, *command.then]
        available = {**command.step_data, **resume.data}
        index = resume.start or 0
        current = self._chained(command, names[index], available)
        # The result of the step the chain went on from: sent without waiting for the broker
        # (the next step starts at once), acknowledged before the next result is sent (their
        # order holds whatever the broker does) and before the command is done.
        in_flight: _InFlightResult | None = None
        answered: list[str] = []
        try:
            while True:
                message_id = envelope.message_id if index == 0 else \
                    f"{envelope.message_id}:{current.step}"
                skip = self.guard.admit(message_id, current) if index else None
                if skip is not None:
                    self._skip(current, skip)
                    break
                self.executions += 1
                result, cancelled = self._execute(current, lease)
                if lease.revoked:
                    log.info("%s/%s: partition revoked while its chain ran; its new owner "
                             "answers", command.task_id, current.step)
                    self.guard.abandoned(envelope.message_id)
                    _count(current, "abandoned")
                    return False
                following = names[index + 1] if index + 1 < len(names) else ""
                go_on = False
                if (following and isinstance(result, msg.StepSucceeded) and not cancelled
                        and not self._stop.is_set()):
                    go_on = True
                    result = replace(result, started_next=following)
                    available[current.step] = result.data_json
                _count(current, "succeeded" if isinstance(result, msg.StepSucceeded)
                       else "failed")
                value, original = self._encode(envelope, current, result,
                                               f"{message_id}:result")
                if index:
                    answered.append(message_id)
                self._settle(envelope, in_flight, lease)
                in_flight = None
                if go_on and original:
                    in_flight = _InFlightResult(current, f"{message_id}:result",
                                                self.results.send_nowait(
                                                    current.task_id.encode(), value))
                    index += 1
                    current = self._chained(command, following, available)
                    continue
                self._send(envelope, current, value, lease, f"{message_id}:result")
                break
            self._settle(envelope, in_flight, lease)
        except DeliveryFailed as error:
            log.warning("results of %s's chain not delivered (%s): left to redelivery",
                        command.task_id, error.reason)
            self.guard.abandoned(envelope.message_id)
            return False
        for message_id in (*answered, envelope.message_id):
            self.guard.answered(message_id)
        return True

    def _settle(self, envelope: Envelope, in_flight: _InFlightResult | None,
                lease: Lease) -> None:
        """Until the result sent without waiting is acknowledged (sent again if need be)."""
        if in_flight is None:
            return
        try:
            self.results.settle(in_flight.sent, lambda: lease.revoked)
        except DeliveryFailed as error:
            if not error.too_large:
                raise
            self._send_refusal(envelope, in_flight.command, error, lease, in_flight.result_id)

    def _chained(self, command: msg.ExecuteStep, name: str,
                 available: dict[str, str]) -> msg.ExecuteStep:
        """Step ``name`` of the command's chain as a command of its own (the command itself
        for its first step, with only the data that step reads)."""
        try:
            definition = self._registry.get(command.task_type, command.definition_version)
        except LookupError:  # the first step's run reports it (VersionNotDeployed & co.)
            return command
        if name == command.step:
            return replace(command, step_data=read_by(definition.get_step(name), available),
                           then=[])
        return chained_command(command, definition, name, available, self._now_ms())

    def _deliver(self, envelope: Envelope, command: msg.ExecuteStep | msg.CompensateStep,
                 result: Result, lease: Lease) -> None:
        """Send the result (or the failure replacing one the codec or the broker refuses)."""
        value, _ = self._encode(envelope, command, result, f"{envelope.message_id}:result")
        self._send(envelope, command, value, lease, f"{envelope.message_id}:result")

    def _encode(self, envelope: Envelope, command: msg.ExecuteStep | msg.CompensateStep,
                result: Result, result_id: str) -> tuple[bytes, bool]:
        """The result's record, or a failure's when the result is too large or the codec
        refuses it; True when it is the result's."""
        def wrap(payload: Result) -> Envelope:
            return Envelope(payload=payload, message_id=result_id, task_id=command.task_id,
                            correlation_id=envelope.correlation_id,
                            causation_id=envelope.message_id, occurred_at_ms=self._now_ms(),
                            task_type=command.task_type)

        try:
            return self.results.encode(wrap(result)), True
        except ResultTooLarge as error:
            return self.results.encode(wrap(_failure(command, "ResultTooLarge", str(error)))), \
                False
        except Exception as error:  # a result the codec refuses: the attempt failed for good
            log.exception("could not encode the result of %s/%s", command.task_id, command.step)
            return self.results.encode(wrap(_failure(
                command, "ResultEncodingFailed", f"{type(error).__name__}: {error}"))), False

    def _send(self, envelope: Envelope, command: msg.ExecuteStep | msg.CompensateStep,
              value: bytes, lease: Lease, result_id: str) -> None:
        """Until acknowledged; a record the broker refuses as too large is replaced by the
        attempt's failure saying so."""
        try:
            self.results.deliver(command.task_id.encode(), value, lambda: lease.revoked)
        except DeliveryFailed as error:
            if not error.too_large:
                raise
            self._send_refusal(envelope, command, error, lease, result_id)

    def _send_refusal(self, envelope: Envelope, command: msg.ExecuteStep | msg.CompensateStep,
                      error: DeliveryFailed, lease: Lease, result_id: str) -> None:
        """The attempt's failure in place of a result the broker refused as too large."""
        refused = _failure(command, "ResultTooLarge",
                           f"the broker refused the result as too large: {error.reason}")
        value, _ = self._encode(envelope, command, refused, result_id)
        self.results.deliver(command.task_id.encode(), value, lambda: lease.revoked)


@dataclass(frozen=True)
class _InFlightResult:
    """A chain's result sent without waiting: what to send instead if the broker refuses it."""

    command: msg.ExecuteStep
    result_id: str
    sent: InFlight

def _failure(command: msg.ExecuteStep | msg.CompensateStep, error_type: str, message: str,
             retryable: bool = False) -> msg.StepAttemptFailed | msg.CompensationAttemptFailed:
    trace_id = telemetry.current_trace_id() or None
    if isinstance(command, msg.CompensateStep):
        return msg.CompensationAttemptFailed(command.task_id, command.step, command.attempt,
                                             error_type, message, trace_id,
                                             command.surplus_attempt)
    return msg.StepAttemptFailed(command.task_id, command.step, command.attempt, error_type,
                                 message, retryable, trace_id, command.fencing_token)

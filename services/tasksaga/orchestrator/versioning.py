"""Which definition version decides a message, and what happens when it is not deployed.

A task is decided by the version recorded in its TaskSubmitted. When that version is not
deployed, the task is parked and its messages kept (``tasksaga.core.versions``) instead of
failing them until they are dead-lettered. A parked task resumes on its next message once its
version is deployed again, on an operator's migrate, or on an operator's cancel.
"""

from __future__ import annotations

import base64
import json
import logging
import typing
from typing import Any

from opentelemetry import metrics

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.wire import Envelope
from tasksaga.core import messages as msg
from tasksaga.core import versions
from tasksaga.core.children import downstream_submissions
from tasksaga.core.decide import Decision, RandomFraction, decide
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.registry import TaskRegistry, UnknownTaskType, UnknownVersion
from tasksaga.core.state import TaskState, TaskStatus

log = logging.getLogger(__name__)

# Parked tasks, by type and version: up when one is parked, down when it resumes (this
# process's view; the status projection holds every parked task: status VersionMissing).
_PARKED = metrics.get_meter("tasksaga.orchestrator").create_up_down_counter(
    "tasksaga.tasks.version_missing",
    description="tasks parked because their definition version is not deployed")


class VersionRouter:
    def __init__(self, registry: TaskRegistry, codec: AvroCodec, random: RandomFraction,
                 parked_gauge: Any = _PARKED, chains: bool = False) -> None:
        self._registry = registry
        self._chains = chains  # first dispatches carry chains (tasksaga.core.chains)
        self._parked = parked_gauge  # an OpenTelemetry up-down counter (or a test's fake)
        self._codec = codec
        self._random = random

    def decide_message(self, state: TaskState, message: msg.Inbound,
                       envelope: Envelope | None, now_ms: int) -> Decision:
        """Decide any message: a new task starts on the newest version (recorded in its
        TaskSubmitted); an existing one is decided by its own version, or parked without it.
        A decision that completes the task also submits the deployed types that depend_on
        it, so they commit with the completion. Raises UnknownTaskType for a submission of a
        type not deployed."""
        decision = self._decide_message(state, message, envelope, now_ms)
        downstream, refused = downstream_submissions(
            decision.state, decision.events,
            self._registry.dependents_of(decision.state.task_type), now_ms)
        decision.commands.extend(downstream)
        for reason in refused:
            log.error("depends_on: %s", reason)
        return decision

    def _decide_message(self, state: TaskState, message: msg.Inbound,
                        envelope: Envelope | None, now_ms: int) -> Decision:
        if isinstance(message, msg.SubmitTask):
            return self._rules(self._submitted_version(message), state, message, now_ms)
        if state.status is TaskStatus.NEW:  # nothing to act on: decide() ignores it
            return self._rules(self._registry.get(state.task_type), state, message, now_ms)
        return self.decide(state, message, envelope, now_ms)

    def _submitted_version(self, command: msg.SubmitTask) -> TaskDefinition:
        """The version the API validated with, when deployed here too; else the newest (an
        API deployed before its orchestrator, in a rolling deployment)."""
        if command.definition_version:
            try:
                return self._registry.get(command.task_type, command.definition_version)
            except UnknownVersion as error:
                log.warning("task %s: %s; it starts on the newest deployed version",
                            command.task_id, error)
        return self._registry.get(command.task_type)

    def decide(self, state: TaskState, message: msg.Inbound, envelope: Envelope | None,
               now_ms: int) -> Decision:
        """Decide one message of a task that exists (not a submission)."""
        own = self._own_version(state)
        if isinstance(message, msg.MigrateTask):
            return self._migrate(state, own, message, now_ms)
        if state.status is TaskStatus.VERSION_MISSING:
            if own is not None:  # deployed again: resume, then this message
                return self._resume(state, own, own, "version deployed again", message, now_ms)
            if isinstance(message, msg.CancelTask):
                return self._cancel_parked(state, message, now_ms)
        if own is None:
            return self._park(state, message, envelope, now_ms)
        return self._rules(own, state, message, now_ms)

    def _rules(self, definition: TaskDefinition, state: TaskState, message: msg.Inbound,
               now_ms: int) -> Decision:
        return decide(definition, state, message, now_ms, self._random, self._chains)

    def _own_version(self, state: TaskState) -> TaskDefinition | None:
        try:
            return self._registry.get(state.task_type, state.definition_version)
        except UnknownTaskType:  # that version, or the whole type, is not deployed: parked
            return None

    def _park(self, state: TaskState, message: msg.Inbound, envelope: Envelope | None,
              now_ms: int) -> Decision:
        if isinstance(message, msg.TimerFired):  # timers are not envelopes: their fields
            encoded = json.dumps({"kind": str(message.kind), "step": message.step,
                                  "attempt": message.attempt}).encode()
        else:
            assert envelope is not None, "a message off the bus comes in its envelope"
            encoded = self._codec.encode(envelope)
        deployed = self._registry.versions(state.task_type)
        decision = versions.park(state, deployed, type(message).__name__,
                                 base64.b64encode(encoded).decode(), now_ms)
        if state.status is not TaskStatus.VERSION_MISSING:
            log.error("task %s (%s) started on version %d, which is not deployed (deployed: %s):"
                      " parked until an operator migrates or cancels it", state.task_id,
                      state.task_type, state.definition_version, deployed)
            self._parked.add(1, {"task_type": state.task_type,
                            "version": str(state.definition_version)})
        return decision

    def _migrate(self, state: TaskState, own: TaskDefinition | None,
                 command: msg.MigrateTask, now_ms: int) -> Decision:
        try:
            target = self._registry.get(state.task_type, command.to_version)
        except UnknownTaskType as error:  # that version, or the whole type, is not here
            return versions.refuse(state, command.to_version, str(error), now_ms)
        return self._resume(state, own, target, "operator migrate", None, now_ms)

    def _cancel_parked(self, state: TaskState, command: msg.CancelTask,
                       now_ms: int) -> Decision:
        target = versions.version_to_compensate(
            state, [self._registry.get(state.task_type, v)
                    for v in self._registry.versions(state.task_type)])
        if target is None:
            return versions.refuse(
                state, 0, f"cannot cancel: no deployed version of {state.task_type} "
                f"({self._registry.versions(state.task_type)}) has the steps version "
                f"{state.definition_version} recorded, so their compensations are not "
                "deployed either; deploy version "
                f"{state.definition_version} again, then cancel", now_ms)
        return self._resume(state, None, target, "operator cancel", command, now_ms)

    def _resume(self, state: TaskState, source: TaskDefinition | None,
                target: TaskDefinition, reason: str, then: msg.Inbound | None,
                now_ms: int) -> Decision:
        parked = state.parked
        decision = versions.migrate(state, source, target, reason, now_ms)
        if decision.state.status is TaskStatus.VERSION_MISSING:
            return decision  # refused
        self._parked.add(-1, {"task_type": state.task_type,
                              "version": str(state.definition_version)})
        for kept in parked:
            message = self._unpark(state.task_id, kept.message_type, kept.encoded_b64)
            decision = versions.combine(
                decision, self._rules(target, decision.state, message, now_ms))
        if then is not None:
            decision = versions.combine(
                decision, self._rules(target, decision.state, then, now_ms))
        return decision

    def _unpark(self, task_id: str, message_type: str, encoded_b64: str) -> msg.Inbound:
        raw = base64.b64decode(encoded_b64)
        if message_type == "TimerFired":
            fields = json.loads(raw)
            return msg.TimerFired(task_id, msg.TimerKind(fields["kind"]), fields["step"],
                                  fields["attempt"])
        payload = self._codec.decode(raw).payload
        assert isinstance(payload, typing.get_args(msg.Inbound)), payload
        return payload  # type: ignore[no-any-return]

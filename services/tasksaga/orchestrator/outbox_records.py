"""The Kafka records a decision sends: its events, its step commands, its commands for other
tasks — each on its topic, keyed, encoded and with the headers its consumers filter on."""

from __future__ import annotations

from collections.abc import Sequence

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.wire import CALLBACK_HEADER, EVENT_TYPE_HEADER, Envelope, Topics
from tasksaga.core import messages as msg
from tasksaga.core.ports import OutboxRecord
from tasksaga.core.registry import TaskRegistry, UnknownTaskType
from tasksaga.core.state import TaskState

Headers = list[tuple[str, bytes]]


class OutboxRecords:
    def __init__(self, registry: TaskRegistry, codec: AvroCodec, topics: Topics) -> None:
        self._registry = registry
        self._codec = codec
        self._topics = topics

    def events(self, state: TaskState, envelopes: Sequence[Envelope],
               encoded: Sequence[bytes], headers: Headers) -> list[OutboxRecord]:
        """The task's new events on task-events, keyed by task. Two headers let a consumer
        skip a record without decoding it: the event's type, and whether the task has a
        callback URL (the notifier has nothing to do for a task without one)."""
        key = state.task_id.encode()
        callback = b"1" if state.callback_url else b"0"
        return [
            OutboxRecord(self._topics.task_events, key, value, [
                *headers, (EVENT_TYPE_HEADER, type(envelope.payload).__name__.encode()),
                (CALLBACK_HEADER, callback)])
            for envelope, value in zip(envelopes, encoded, strict=True)
        ]

    def commands(self, state: TaskState, commands: Sequence[msg.Outbound], cause: str,
                 now: int, headers: Headers) -> list[OutboxRecord]:
        records = []
        for index, command in enumerate(commands):
            message_id = f"{state.task_id}:{state.version}:cmd{index}"
            if isinstance(command, msg.TaskToTask):
                records.append(self.task_command(command, message_id, cause, now, headers))
                continue
            topic = (
                self._topics.step_cancellations
                if isinstance(command, msg.CancelStep)
                else self._topics.step_commands(
                    command.queue, self._requirements(state, command.step))
            )
            envelope = Envelope(
                payload=command, message_id=message_id, task_id=state.task_id,
                correlation_id=state.task_id, causation_id=cause, occurred_at_ms=now,
                task_type=state.task_type, version=state.version,
            )
            # Keyed by task and step, so members of a parallel group spread over partitions
            # (and workers); a task's results still come back keyed by the task alone.
            command_key = f"{state.task_id}:{command.step}".encode()
            records.append(
                OutboxRecord(topic, command_key, self._codec.encode(envelope), headers))
        return records

    def task_command(self, command: msg.TaskToTask, message_id: str, cause: str, now: int,
                     headers: Headers) -> OutboxRecord:
        """A command for another task (a child, a parent, a downstream): on task-commands,
        keyed and addressed by that task, so its own orchestrator decides it."""
        envelope = Envelope(
            payload=command, message_id=message_id, task_id=command.task_id,
            correlation_id=command.task_id, causation_id=cause, occurred_at_ms=now,
            task_type=command.task_type if isinstance(command, msg.SubmitTask) else "")
        return OutboxRecord(self._topics.task_commands, command.task_id.encode(),
                            self._codec.encode(envelope), headers)

    def _requirements(self, state: TaskState, step: str) -> frozenset[str]:
        """The capabilities the step's worker must have, from the task's definition version
        (routing by Kafka: its commands go to the topic only capable workers consume)."""
        try:
            definition = self._registry.get(state.task_type, state.definition_version)
        except UnknownTaskType:
            return frozenset()
        return definition.get_step(step).requires if definition.has_step(step) else frozenset()

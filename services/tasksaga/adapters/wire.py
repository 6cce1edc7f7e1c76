"""What travels on Kafka: an envelope around one payload, and the topics it travels on.

The envelope carries identity (message id), tracing of cause (correlation and causation ids)
and the task it belongs to; the payload is a core event, command or step result, or one of the
records defined here that only the shells use (dead letters, webhook deliveries).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tasksaga.core import events as ev
from tasksaga.core import messages as msg
from tasksaga.core.capabilities import capability_suffix
from tasksaga.core.envelope import Envelope

__all__ = ["CALLBACK_HEADER", "EVENT_TYPE_HEADER", "MESSAGE_SCHEMAS", "DeadLetter", "Envelope",
           "Topics", "WebhookDelivery"]


@dataclass(frozen=True)
class DeadLetter:
    source_topic: str
    source_partition: int
    source_offset: int
    consumer_group: str
    reason: str
    key: bytes | None
    value: bytes | None
    failed_at_ms: int
    # The original record's headers (trace context), so a replay sends them again; values
    # decoded as UTF-8 (the services only write text headers).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookDelivery:
    """The outcome of one webhook POST (the notifier's delivery log, as a message)."""

    delivery_id: str
    task_id: str
    url: str
    event_type: str
    attempt: int
    status_code: int | None
    outcome: str  # "delivered", "retrying" or "gave_up"
    error: str | None
    delivered_at_ms: int


# Headers of task-events records, so a consumer can skip one without decoding it: the event's
# type name, and b"1" / b"0" for whether its task has a callback URL (records written before
# these headers existed have neither: decode them).
EVENT_TYPE_HEADER = "tasksaga-event-type"
CALLBACK_HEADER = "tasksaga-callback"


# Each Kafka record schema: its name, and the payload types its union holds, in order.
TASK_COMMAND = ("TaskCommandMessage", (msg.SubmitTask, msg.CancelTask, msg.RetryCompensation,
                                        msg.RetryForward, msg.SendSignal,
                                        msg.MigrateTask, msg.SkipCompensation,
                                        msg.ResolveTask, msg.RedriveTask,
                                        msg.ChildTaskFinished, msg.CompensateTask))
TASK_EVENT = ("TaskEventMessage", ev.EVENT_TYPES)
STEP_COMMAND = ("StepCommandMessage", (msg.ExecuteStep, msg.CompensateStep, msg.CancelStep))
STEP_RESULT = (
    "StepResultMessage",
    (
        msg.StepSucceeded,
        msg.StepAttemptFailed,
        msg.CompensationSucceeded,
        msg.CompensationAttemptFailed,
        msg.StepHeartbeat,
    ),
)
DEAD_LETTER = ("DeadLetterMessage", (DeadLetter,))
WEBHOOK_DELIVERY = ("WebhookDeliveryMessage", (WebhookDelivery,))

MESSAGE_SCHEMAS: tuple[tuple[str, tuple[type[Any], ...]], ...] = (
    TASK_COMMAND, TASK_EVENT, STEP_COMMAND, STEP_RESULT, DEAD_LETTER, WEBHOOK_DELIVERY,
)


@dataclass(frozen=True)
class Topics:
    """Topic names, prefixed so several deployments can share one cluster."""

    prefix: str = "tasksaga"

    @property
    def task_commands(self) -> str:
        return f"{self.prefix}.task-commands"

    @property
    def task_events(self) -> str:
        return f"{self.prefix}.task-events"

    @property
    def step_results(self) -> str:
        return f"{self.prefix}.step-results"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.dead-letter"

    @property
    def webhook_deliveries(self) -> str:
        return f"{self.prefix}.webhook-deliveries"

    @property
    def step_cancellations(self) -> str:
        """Broadcast: every worker reads every cancellation (it may be running the step)."""
        return f"{self.prefix}.step-cancellations"

    def step_commands(self, queue: str, requires: Iterable[str] = ()) -> str:
        """A queue's step commands; those of steps requiring capabilities have a topic of
        their own, which only capable workers consume (tasksaga.core.capabilities)."""
        return f"{self.prefix}.step-commands.{queue}{capability_suffix(requires)}"

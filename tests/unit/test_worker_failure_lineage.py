"""A failed attempt carries its error's class lineage, so the orchestrator's policy can match
a base class that only the worker's process knows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tasksaga.adapters.avro_codec import AvroCodec
from tasksaga.adapters.kafka_parallel import Lease
from tasksaga.adapters.wire import Topics
from tasksaga.core import TaskDefinition
from tasksaga.core import messages as msg
from tasksaga.core.registry import TaskRegistry
from tasksaga.worker.cancellation import CancellationBook
from tasksaga.worker.runner import StepRunner


class Req(BaseModel):
    pass


class PaymentError(Exception):
    pass


class CardDeclined(PaymentError):
    pass


task = TaskDefinition("Pay", queue="pay", request=Req)


@task.step("Charge", order=1)
def charge(ctx: Any) -> None:
    raise CardDeclined("declined")


class SentEnvelopes:
    """The producer's one method the runner uses for heartbeats, recording what it sends."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send_envelope(self, _codec: Any, _topic: str, envelope: Any, flush: bool = True) -> None:
        self.sent.append(envelope.payload)


def test_a_failed_attempt_names_every_class_of_its_error() -> None:
    producer = SentEnvelopes()
    runner = StepRunner(TaskRegistry([task]), None, producer,  # type: ignore[arg-type]
                        AvroCodec(), Topics("t"), CancellationBook(), lambda: 0)
    command = msg.ExecuteStep("t1", "Pay", "Charge", 1, "pay", "{}", {}, "t1:Charge:1", 10**13)
    result = runner.execute(command, Lease("t", 0, 0))
    assert isinstance(result, msg.StepAttemptFailed)
    assert result.error_type == "CardDeclined"
    assert result.error_lineage[:3] == ["CardDeclined", "PaymentError", "Exception"]
    # The worker reported the start first: the step timeout counts from there.
    assert [type(p).__name__ for p in producer.sent] == ["StepHeartbeat"]
    assert producer.sent[0].started

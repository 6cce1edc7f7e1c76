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
from tasksaga.testing import InMemoryBus
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


def test_a_failed_attempt_names_every_class_of_its_error() -> None:
    bus, codec = InMemoryBus(), AvroCodec()
    runner = StepRunner(TaskRegistry([task]), None, bus, codec, Topics("t"), CancellationBook(),
                        lambda: 0)
    command = msg.ExecuteStep("t1", "Pay", "Charge", 1, "pay", "{}", {}, "t1:Charge:1", 10**13)
    result = runner.execute(command, Lease("t", 0, 0))
    assert isinstance(result, msg.StepAttemptFailed)
    assert result.error_type == "CardDeclined"
    assert result.error_lineage[:3] == ["CardDeclined", "PaymentError", "Exception"]
    # The worker reported the start first: the step timeout counts from there.
    sent = [codec.decode(r.value).payload for r in bus.records(Topics("t").step_results)]
    assert [type(p).__name__ for p in sent] == ["StepHeartbeat"]
    assert sent[0].started

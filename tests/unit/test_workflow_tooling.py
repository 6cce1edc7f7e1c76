"""A workflow's events in the tools the sagas have: the audit line, the live stream (a
suspended workflow ends the stream as NeedsAttention) and the webhook body."""

from __future__ import annotations

import json

from tasksaga.api.live.messages import event_message
from tasksaga.core import events as ev
from tasksaga.core.audit import describe
from tasksaga.core.envelope import Envelope
from tasksaga.notifier.rules import notification_body

DIVERGED = ev.WorkflowDiverged(3, "place_order line 41", "step 'charge_card'",
                               "step 'charge_card_v2'", 1_000)


def envelope(event: ev.TaskEvent) -> Envelope:
    return Envelope(payload=event, message_id="t-1:9", task_id="t-1", correlation_id="t-1",
                    causation_id=None, occurred_at_ms=1_000, task_type="PlaceOrder", version=9)


def test_a_divergence_reads_in_the_audit_trail_with_the_await_expected_and_got() -> None:
    assert describe(DIVERGED) == (
        "workflow suspended, non-determinism at await #3 (place_order line 41): history has "
        "step 'charge_card', code issued step 'charge_card_v2'")
    assert describe(ev.WorkflowValueRecorded("uuid#2", "uuid", '"abc"', 1)) == (
        'workflow recorded uuid#2 = "abc"')


def test_a_divergence_ends_the_live_stream_as_needs_attention() -> None:
    message = event_message(envelope(DIVERGED))
    assert message.terminal and message.data["status"] == "NeedsAttention"
    assert not event_message(envelope(ev.WorkflowValueRecorded("now", "now", "1", 1))).terminal


def test_a_divergence_is_a_webhook_with_its_error() -> None:
    body = notification_body(envelope(DIVERGED))
    assert body["status"] == "NeedsAttention"
    assert body["error"] == {"type": "NonDeterminism", "message": (
        "await #3 (place_order line 41): the history records step 'charge_card', the code "
        "issued step 'charge_card_v2'")}
    json.dumps(body)  # the body is JSON

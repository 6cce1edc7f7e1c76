"""The notifier's pure rules: signatures, backoff, giving up, what is notified, body shape."""

from __future__ import annotations

import json

import pytest

from tasksaga.adapters.wire import Envelope
from tasksaga.core import events as ev
from tasksaga.notifier import rules
from tasksaga.notifier.signature import is_fresh, sign, sign_v2, verify, verify_v2

SECRET = "test-secret-0123456789"
BODY = b'{"a":1}'
# Independent known answer: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac <SECRET>
KNOWN_SIGNATURE = "sha256=6e873f59dc6002f6de5f578e9bf3f90a7906473a2924651d6f4cc33d61aff598"
# printf 'v2\nt-1:7\n1700000000\n{"a":1}' | openssl dgst -sha256 -hmac <SECRET>
KNOWN_SIGNATURE_V2 = "sha256=a151c12696d987a29758c5b973cef89c408e2880bad0607938af917b6514459a"


def envelope(payload: object, version: int = 7, message_id: str = "t-1:7") -> Envelope:
    return Envelope(
        payload=payload, message_id=message_id, task_id="t-1", correlation_id="t-1",
        causation_id=None, occurred_at_ms=1_714_564_800_250, task_type="zip_archive",
        version=version,
    )


# -- signature ------------------------------------------------------------------------------------


def test_signature_known_answer() -> None:
    assert sign(SECRET, 1_700_000_000, BODY) == KNOWN_SIGNATURE
    assert sign(SECRET.encode(), "1700000000", BODY) == KNOWN_SIGNATURE


def test_verify_accepts_the_signature_and_refuses_any_change() -> None:
    assert verify(SECRET, "1700000000", BODY, KNOWN_SIGNATURE)
    assert not verify(SECRET, "1700000001", BODY, KNOWN_SIGNATURE)
    assert not verify(SECRET, "1700000000", b'{"a":2}', KNOWN_SIGNATURE)
    assert not verify("another-secret-0123456789", "1700000000", BODY, KNOWN_SIGNATURE)
    assert not verify(SECRET, "1700000000", BODY, KNOWN_SIGNATURE[:-1])
    assert not verify(SECRET, "1700000000", BODY, KNOWN_SIGNATURE.replace("sha256", "sha1"))
    assert not verify(SECRET, "1700000000", BODY, None)
    assert not verify(SECRET, "1700000000", BODY, "")
    assert not verify(SECRET, "17000000\u00e9", BODY, KNOWN_SIGNATURE)


def test_freshness_window() -> None:
    assert is_fresh("1700000000", 1_700_000_300)
    assert not is_fresh("1700000000", 1_700_000_301)
    assert not is_fresh("not-a-number", 1_700_000_000)


def test_delivery_headers_carry_a_verifiable_signature() -> None:
    headers = rules.delivery_headers(SECRET, "t-1:7", 1_700_000_000, BODY)
    assert headers == {
        "Content-Type": "application/json",
        "X-Tasksaga-Delivery": "t-1:7",
        "X-Tasksaga-Timestamp": "1700000000",
        "X-Tasksaga-Signature": KNOWN_SIGNATURE,
        "X-Tasksaga-Signature-V2": KNOWN_SIGNATURE_V2,
    }
    assert verify_v2(SECRET, "t-1:7", "1700000000", BODY, headers["X-Tasksaga-Signature-V2"])


def test_signature_v2_covers_the_delivery_id_timestamp_and_body() -> None:
    assert sign_v2(SECRET, "t-1:7", 1_700_000_000, BODY) == KNOWN_SIGNATURE_V2
    assert verify_v2(SECRET, "t-1:7", "1700000000", BODY, KNOWN_SIGNATURE_V2)
    assert not verify_v2(SECRET, "t-1:8", "1700000000", BODY, KNOWN_SIGNATURE_V2)
    assert not verify_v2(SECRET, "t-1:7", "1700000001", BODY, KNOWN_SIGNATURE_V2)
    assert not verify_v2(SECRET, "t-1:7", "1700000000", b'{"a":2}', KNOWN_SIGNATURE_V2)
    assert not verify_v2("another-secret-0123456789", "t-1:7", "1700000000", BODY,
                         KNOWN_SIGNATURE_V2)
    assert not verify_v2(SECRET, "t-1:7", "1700000000", BODY, None)
    # No shifting of bytes between the fields: a line break in a field is refused outright.
    assert not verify_v2(SECRET, "t-1:7\n1700000000", "", BODY, KNOWN_SIGNATURE_V2)
    assert not verify_v2(SECRET, "t-1:\u00e9", "1700000000", BODY, KNOWN_SIGNATURE_V2)


def test_judge_gives_up_at_once_on_a_refused_receiver() -> None:
    verdict = rules.judge(SCHEDULE, 1, None, 5_000, 0.5, retryable=False)
    assert verdict == rules.Verdict(rules.Outcome.GAVE_UP)


# -- backoff and giving up ------------------------------------------------------------------------

SCHEDULE = rules.webhook_retry_policy(max_attempts=8, base_ms=1000, cap_ms=60_000)


def test_backoff_doubles_up_to_the_cap_with_full_jitter() -> None:
    # random fraction 0: the ceiling of each wait; 1 would be no wait at all.
    after = [SCHEDULE.delay_before(failed + 1, 0.0) for failed in range(1, 10)]
    assert after == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
    assert [SCHEDULE.delay_before(failed + 1, 0.5) for failed in range(1, 9)] == [
        500, 1000, 2000, 4000, 8000, 16000, 30000, 30000,
    ]
    assert SCHEDULE.delay_before(4, 1.0) == 0


def test_judge_delivers_on_any_2xx() -> None:
    for code in (200, 201, 202, 204, 299):
        assert rules.judge(SCHEDULE, 1, code, 5_000, 0.5) == rules.Verdict(
            rules.Outcome.DELIVERED
        )


@pytest.mark.parametrize("code", [None, 199, 301, 302, 400, 404, 410, 500, 503])
def test_judge_retries_everything_else_with_backoff(code: int | None) -> None:
    verdict = rules.judge(SCHEDULE, 3, code, 5_000, 0.25)
    assert verdict == rules.Verdict(rules.Outcome.RETRYING, 5_000 + 3000)


def test_judge_gives_up_after_max_attempts() -> None:
    schedule = rules.webhook_retry_policy(max_attempts=3, base_ms=1000, cap_ms=60_000)
    outcomes = [rules.judge(schedule, n, 500, 0, 0.5).outcome for n in (1, 2, 3)]
    assert outcomes == [rules.Outcome.RETRYING, rules.Outcome.RETRYING, rules.Outcome.GAVE_UP]
    assert rules.judge(schedule, 3, 500, 0, 0.5).next_attempt_at_ms is None
    # A success on the last attempt is still a success.
    assert rules.judge(schedule, 3, 200, 0, 0.5).outcome is rules.Outcome.DELIVERED


def test_schedule_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        rules.webhook_retry_policy(max_attempts=0, base_ms=1000, cap_ms=60_000)
    with pytest.raises(ValueError):
        rules.webhook_retry_policy(max_attempts=3, base_ms=-1, cap_ms=60_000)


# -- what is notified -----------------------------------------------------------------------------

NOTIFIABLE = [
    ev.StepCompleted("fetch", 1, "{}", 1),
    ev.StepSkipped("fetch", "condition false", 1),
    ev.CompensationStarted("step failed", 1),
    ev.StepCompensated("fetch", 1, 1),
    ev.TaskCompleted("{}", 1),
    ev.TaskFailed("boom", 1),
    ev.TaskCancelled("asked", 1),
    ev.TaskCompensationFailed("fetch", "IOError", "disk", 1),
    ev.TaskNeedsAttention("notify", "ship", "MailDown", "smtp refused", 1),
    ev.TaskResolved("fixed by hand", "ops", "CompensationFailed", 1),
    ev.WorkflowDiverged(2, "place_order line 9", "step 'charge'", "step 'charge_v2'", 1),
]
NOT_NOTIFIABLE = [
    ev.TaskSubmitted("t-1", "zip_archive", "{}", "http://x", None, 1, None),
    ev.StepDispatched("fetch", 1, "default", 1, 2),
    ev.StepFailed("fetch", 1, "E", "m", True, 1),
    ev.StepRetryScheduled("fetch", 2, 1),
    ev.ConditionEvaluated("fetch", "d", "f", True, "{}", 1),
    ev.CancellationRequested("asked", 1),
    ev.StepCompensationDispatched("fetch", 1, 1),
    ev.StepCompensationFailed("fetch", 1, "E", "m", True, 1),
    ev.StepCompensationRetryScheduled("fetch", 2, 1),
    ev.StepCancellationRequested("fetch", 1, "task cancelled", 1),
    ev.CompensationRetryRequested(1),
    ev.StepSurplusSucceeded("fetch", 1, "{}", True, 1),
    ev.StepSurplusCompensated("fetch", 1, 1),
    ev.StepSurplusCompensationFailed("fetch", 1, 1, "E", "m", False, 1),
    ev.CancellationRefused("asked", "ship", 1),
    ev.ForwardRetryRequested(1),
    ev.StepWaiting("approve", 1, "signal", None, 1),
    ev.SignalReceived("approve", "sig-1", "{}", 1),
    ev.TaskVersionMissing(1, [2], 1),
    ev.MessageParked("StepSucceeded", "", 1),
    ev.TaskMigrated(1, 2, "sha256:0", "operator migrate", 1),
    ev.MigrationRefused(2, "incompatible", 1),
    ev.CompensationSkipped("fetch", "undone by hand", "ops", 1),
    ev.TaskRedriven(["ExecuteStep fetch#1"], "stuck", "ops", 1),
    ev.ChildTaskStarted("Ship", 1, "child-1", "Shipping", 1),
    ev.ChildTaskEnded("Ship", "child-1", "Completed", None, 1),
    ev.FanOutExpanded("each", 1, ['{"page":1}'], 1),
    ev.FanOutCompleted("each", 1, 1, 1),
    ev.FanOutRetried("each", 2, 1, 1),
    ev.WorkflowValueRecorded("now", "now", "1", 1),
]


def test_every_event_type_is_classified() -> None:
    classified = {type(e) for e in NOTIFIABLE + NOT_NOTIFIABLE}
    assert classified == set(ev.EVENT_TYPES)


@pytest.mark.parametrize("event", NOTIFIABLE, ids=lambda e: type(e).__name__)
def test_notifiable_events_queue_a_delivery(event: object) -> None:
    assert rules.is_notifiable(event)
    action = rules.plan(envelope(event))
    assert isinstance(action, rules.Notify)
    assert action.delivery_id == "t-1:7"
    assert action.event_type == type(event).__name__
    assert set(json.loads(action.body)) == {
        "delivery_id", "task_id", "task_type", "event_type", "version", "occurred_at",
        "status", "step", "response", "reason", "error",
    }


@pytest.mark.parametrize("event", NOT_NOTIFIABLE[1:], ids=lambda e: type(e).__name__)
def test_other_events_are_ignored(event: object) -> None:
    assert not rules.is_notifiable(event)
    assert rules.plan(envelope(event)) == rules.Ignore()


def test_terminal_events() -> None:
    assert [rules.is_terminal(e) for e in NOTIFIABLE] == [False] * 4 + [True] * 7


def test_submission_with_callback_subscribes() -> None:
    submitted = ev.TaskSubmitted("t-1", "zip_archive", "{}", " https://hooks.example/x ", None,
                                 1, None)
    assert rules.plan(envelope(submitted, 1)) == rules.Subscribe("t-1", "https://hooks.example/x")


def test_subscription_carries_the_tasks_tenant() -> None:
    submitted = ev.TaskSubmitted("t-1", "zip_archive", "{}", "https://hooks.example/x", None,
                                 1, None, tenant="acme")
    assert rules.plan(envelope(submitted, 1)) == rules.Subscribe(
        "t-1", "https://hooks.example/x", "acme")


@pytest.mark.parametrize("url", [None, "", "   "])
def test_submission_without_callback_is_ignored(url: str | None) -> None:
    submitted = ev.TaskSubmitted("t-1", "zip_archive", "{}", url, None, 1, None)
    assert rules.plan(envelope(submitted, 1)) == rules.Ignore()


@pytest.mark.parametrize("url", ["ftp://x/y", "/relative", "http://", "javascript:alert(1)"])
def test_submission_with_unusable_callback_is_ignored_with_a_reason(url: str) -> None:
    submitted = ev.TaskSubmitted("t-1", "zip_archive", "{}", url, None, 1, None)
    action = rules.plan(envelope(submitted, 1))
    assert isinstance(action, rules.Ignore) and url in action.reason


# -- body shape -----------------------------------------------------------------------------------


def test_body_of_task_completed() -> None:
    event = ev.TaskCompleted('{"archive": "s3://b/k.zip", "files": 3}', 1)
    action = rules.plan(envelope(event))
    assert isinstance(action, rules.Notify)
    assert json.loads(action.body) == {
        "delivery_id": "t-1:7",
        "task_id": "t-1",
        "task_type": "zip_archive",
        "event_type": "TaskCompleted",
        "version": 7,
        "occurred_at": "2024-05-01T12:00:00.250Z",
        "status": "Completed",
        "step": None,
        "response": {"archive": "s3://b/k.zip", "files": 3},
        "reason": None,
        "error": None,
    }
    # Compact, ASCII, key order as documented: the signed bytes are stable.
    assert action.body.startswith(b'{"delivery_id":"t-1:7","task_id":"t-1",')


def test_body_of_task_failed() -> None:
    body = rules.notification_body(envelope(ev.TaskFailed("step fetch failed: 404", 1)))
    assert body == {
        "delivery_id": "t-1:7",
        "task_id": "t-1",
        "task_type": "zip_archive",
        "event_type": "TaskFailed",
        "version": 7,
        "occurred_at": "2024-05-01T12:00:00.250Z",
        "status": "Failed",
        "step": None,
        "response": None,
        "reason": "step fetch failed: 404",
        "error": None,
    }


def test_body_of_progress_and_compensation_failure() -> None:
    step = rules.notification_body(envelope(ev.StepSkipped("resize", "no images", 1)))
    assert (step["status"], step["step"], step["reason"]) == ("Running", "resize", "no images")
    started = rules.notification_body(envelope(ev.CompensationStarted("fetch failed", 1)))
    assert (started["status"], started["step"]) == ("Compensating", None)
    stuck = rules.notification_body(
        envelope(ev.TaskCompensationFailed("upload", "IOError", "bucket gone", 1))
    )
    assert stuck["status"] == "CompensationFailed"
    assert stuck["step"] == "upload"
    assert stuck["error"] == {"type": "IOError", "message": "bucket gone"}


def test_a_task_left_to_an_operator_after_its_pivot_is_notified_with_the_failed_step() -> None:
    body = rules.notification_body(
        envelope(ev.TaskNeedsAttention("notify", "ship", "MailDown", "smtp refused", 1)))
    assert (body["event_type"], body["status"]) == ("TaskNeedsAttention", "NeedsAttention")
    assert body["step"] == "notify"
    assert body["error"] == {"type": "MailDown", "message": "smtp refused"}
    builder = rules.notification_body(
        envelope(ev.TaskNeedsAttention("", "ship", "KeyError", "'x'", 1)))
    assert builder["step"] is None  # the response builder failed: no step to name


def test_body_keeps_a_response_that_is_not_json_as_text() -> None:
    body = rules.notification_body(envelope(ev.TaskCompleted("not json", 1)))
    assert body["response"] == "not json"


def test_body_is_ascii_even_for_unicode_text() -> None:
    action = rules.plan(envelope(ev.TaskFailed("échec ☹", 1)))
    assert isinstance(action, rules.Notify)
    action.body.decode("ascii")
    assert json.loads(action.body)["reason"] == "échec ☹"


def test_body_refuses_events_that_are_not_notified() -> None:
    with pytest.raises(ValueError):
        rules.notification_body(envelope(ev.StepRetryScheduled("fetch", 2, 1)))


def test_rules_signature_and_sample_receiver_do_no_io() -> None:
    import ast
    from pathlib import Path

    import tasksaga.notifier

    forbidden = {"time", "random", "socket", "httpx", "psycopg", "psycopg_pool", "threading",
                 "confluent_kafka", "os", "uuid", "tasksaga.adapters.kafka_bus",
                 "tasksaga.adapters.pg_store"}
    folder = Path(tasksaga.notifier.__file__).parent
    for name in ("rules.py", "signature.py", "receiver.py"):
        tree = ast.parse((folder / name).read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert not {m for m in imported if m.split(".")[0] in forbidden or m in forbidden}, name


def test_a_record_that_is_not_a_task_event_is_refused_for_the_dead_letter_topic() -> None:
    from tasksaga.adapters.wire import Envelope
    from tasksaga.core import messages as msg
    from tasksaga.notifier import rules

    command = msg.CancelTask(task_id="t1", reason="r", requested_at_ms=0)
    action = rules.plan(Envelope(payload=command, message_id="m", task_id="t1",
                                 correlation_id="t1", causation_id=None, occurred_at_ms=0))
    assert isinstance(action, rules.Refuse) and "CancelTask" in action.reason


# -- records skipped by their headers -------------------------------------------------------------


def test_a_record_of_a_task_without_callback_or_of_an_internal_event_is_skipped_undecoded(
) -> None:
    assert rules.nothing_to_do({"tasksaga-callback": "0", "tasksaga-event-type": "TaskCompleted"})
    assert rules.nothing_to_do({"tasksaga-callback": "1",
                                "tasksaga-event-type": "StepDispatched"})
    for acted_on in ("TaskSubmitted", "TaskCompleted", "StepCompleted", "StepCompensated",
                     "WorkflowDiverged"):
        assert not rules.nothing_to_do({"tasksaga-callback": "1",
                                        "tasksaga-event-type": acted_on})
    # Records written before the headers existed carry neither: they are decoded.
    assert not rules.nothing_to_do({})
    assert not rules.nothing_to_do({"traceparent": "00-abc"})

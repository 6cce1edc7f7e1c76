"""S6 Replay: the sample receiver refuses stale, modified and replayed deliveries.

The deliveries are built by the notifier's own header code (rules.delivery_headers), so the
receiver is checked against what the notifier really sends.
"""

from __future__ import annotations

from tasksaga.notifier import rules
from tasksaga.notifier.receiver import DeliveryCheck, verify_delivery

SECRET = "receiver-secret-0123456789"
NOW = 1_700_000_000
BODY = b'{"delivery_id":"t-1:4","task_id":"t-1","event_type":"TaskCompleted"}'


def genuine(delivery_id: str = "t-1:4", sent_at: int = NOW, body: bytes = BODY
            ) -> tuple[dict[str, str], bytes]:
    return rules.delivery_headers(SECRET, delivery_id, sent_at, body), body


def check(headers: dict[str, str], body: bytes, seen: set[str], now: float = NOW
          ) -> DeliveryCheck:
    return verify_delivery(headers, body, SECRET, now, seen)


def test_a_genuine_delivery_is_accepted_once_and_its_replay_refused() -> None:
    seen: set[str] = set()
    headers, body = genuine()
    first = check(headers, body, seen, now=NOW + 5)
    assert first == DeliveryCheck(True, "accepted", "t-1:4", 200)
    assert seen == {"t-1:4"}
    replay = check(headers, body, seen, now=NOW + 6)
    assert (replay.accepted, replay.http_status) == (False, 200)
    assert replay.reason.startswith("replayed")
    # A notifier retry (new timestamp and signature, same delivery id) is a replay too.
    retry, _ = genuine(sent_at=NOW + 60)
    assert check(retry, body, seen, now=NOW + 61).reason.startswith("replayed")


def test_stale_modified_and_replayed_deliveries_are_refused() -> None:
    seen: set[str] = set()
    headers, body = genuine()
    assert check(headers, body, seen).accepted
    stale_headers, _ = genuine("t-1:5", sent_at=NOW - 301)
    future_headers, _ = genuine("t-1:6", sent_at=NOW + 301)
    other_id = dict(genuine("t-1:7")[0], **{"X-Tasksaga-Delivery": "t-1:8"})
    other_time = dict(genuine("t-1:9")[0], **{"X-Tasksaga-Timestamp": str(NOW + 1)})
    forged = rules.delivery_headers("another-secret-0123456789", "t-1:10", NOW, BODY)
    cases: dict[str, tuple[dict[str, str], bytes, str]] = {
        "stale (301 s old)": (stale_headers, body, "stale"),
        "stale (301 s ahead)": (future_headers, body, "stale"),
        "modified body": (genuine("t-1:11")[0], body.replace(b"Completed", b"Failed"),
                          "modified"),
        "modified delivery id": (other_id, body, "modified"),
        "modified timestamp": (other_time, body, "modified"),
        "signed with another secret": (forged, body, "modified"),
        "replayed": (headers, body, "replayed"),
        "no signature": ({k: v for k, v in genuine("t-1:12")[0].items()
                          if k != "X-Tasksaga-Signature-V2"}, body, "missing"),
        "timestamp not a number": (dict(genuine("t-1:13")[0], **{"X-Tasksaga-Timestamp": "x"}),
                                   body, "X-Tasksaga-Timestamp"),
    }
    refused = {name: check(h, b, seen) for name, (h, b, _) in cases.items()}
    for name, (_, _, why) in cases.items():
        assert not refused[name].accepted, name
        assert why in refused[name].reason, (name, refused[name].reason)
    assert {name: result.http_status for name, result in refused.items()} == {
        name: 200 if name == "replayed" else 401 for name in cases
    }
    # A refused delivery's id is not remembered: the genuine one is still accepted later.
    assert seen == {"t-1:4"}
    assert check(*genuine("t-1:11"), seen).accepted
    print(f"S6 refused/attempted = {sum(not r.accepted for r in refused.values())}/"
          f"{len(cases)} (stale, modified, replayed variants), genuine accepted = 2/2")


def test_header_names_are_case_insensitive() -> None:
    headers, body = genuine()
    lowered = {name.lower(): value for name, value in headers.items()}
    assert check(lowered, body, set()).accepted

"""A sample webhook receiver's check: refuse stale, modified and replayed deliveries.

Copy it into your receiver (it needs only ``tasksaga.notifier.signature``, itself free of
tasksaga dependencies) and call it on the raw request before acting::

    check = verify_delivery(request.headers, raw_body, SECRET, time.time(), seen_ids)
    if not check.accepted:
        return Response(status_code=check.http_status)   # 200 for a replay, 401 otherwise
    handle(json.loads(raw_body))                         # once per delivery id

A delivery is refused when

- a header is missing or malformed (``X-Tasksaga-Delivery``, ``X-Tasksaga-Timestamp``,
  ``X-Tasksaga-Signature-V2``);
- it is **stale**: its timestamp is more than ``tolerance_s`` from ``now`` (a captured
  request cannot be played back later; keep the receiver's clock synchronised);
- it is **modified**: the version 2 signature over delivery id, timestamp and raw body does
  not match (any changed byte, or a request not signed with your secret);
- it is **replayed**: its delivery id is already in ``seen_ids``.

``seen_ids`` is yours: any set-like object (``in``, ``add``). An accepted delivery's id is
added to it. In production make it durable — a table with the id as primary key, written in
the same transaction as the delivery's effect — and keep ids at least as long as the
notifier may retry (``TASKSAGA_WEBHOOK_MAX_ATTEMPTS`` x ``TASKSAGA_WEBHOOK_BACKOFF_CAP_S``,
about 8 minutes with the defaults). A notifier retry of a delivery you already accepted
(your first 200 was lost) is refused as a replay with ``http_status`` 200, so the notifier
stops retrying while nothing happens twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from tasksaga.notifier.signature import DEFAULT_TOLERANCE_S, verify_v2

DELIVERY = "X-Tasksaga-Delivery"
TIMESTAMP = "X-Tasksaga-Timestamp"
SIGNATURE_V2 = "X-Tasksaga-Signature-V2"


class SeenIds(Protocol):
    def __contains__(self, delivery_id: object) -> bool: ...

    def add(self, delivery_id: str) -> None: ...


@dataclass(frozen=True)
class DeliveryCheck:
    accepted: bool
    reason: str  # "accepted", or why it was refused
    delivery_id: str | None
    http_status: int  # what to answer: 200 accepted or replayed, 401 otherwise


def verify_delivery(
    headers: Mapping[str, str],
    body: bytes,
    secret: str | bytes,
    now: float,
    seen_ids: SeenIds,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> DeliveryCheck:
    """Check one POST (``headers`` in any case, ``body`` the raw bytes); see the module."""
    lower = {name.lower(): value for name, value in headers.items()}
    delivery_id = lower.get(DELIVERY.lower())
    timestamp = lower.get(TIMESTAMP.lower())
    signature = lower.get(SIGNATURE_V2.lower())
    missing = [name for name, value in ((DELIVERY, delivery_id), (TIMESTAMP, timestamp),
                                        (SIGNATURE_V2, signature)) if not value]
    if missing or delivery_id is None or timestamp is None:
        return _refused(f"missing header(s): {', '.join(missing)}", delivery_id)
    try:
        sent = int(timestamp.strip())
    except ValueError:
        return _refused(f"{TIMESTAMP} is not a Unix time in seconds", delivery_id)
    if abs(now - sent) > tolerance_s:
        return _refused(f"stale: sent at {sent}, {now - sent:+.0f} s from now (tolerance"
                        f" {tolerance_s} s)", delivery_id)
    # The signature before the replay check: an unsigned request must not learn which ids
    # were seen.
    if not verify_v2(secret, delivery_id, timestamp, body, signature):
        return _refused("modified: the signature does not match the delivery", delivery_id)
    if delivery_id in seen_ids:
        return DeliveryCheck(False, f"replayed: delivery {delivery_id} was already accepted",
                             delivery_id, 200)
    seen_ids.add(delivery_id)
    return DeliveryCheck(True, "accepted", delivery_id, 200)


def _refused(reason: str, delivery_id: str | None) -> DeliveryCheck:
    return DeliveryCheck(False, reason, delivery_id, 401)

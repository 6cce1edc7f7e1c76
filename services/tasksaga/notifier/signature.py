"""Webhook signatures: how the notifier signs a POST, and how a receiver checks it.

Two signatures travel with every POST, both HMAC-SHA256 keyed with the shared secret
(TASKSAGA_WEBHOOK_SECRET) and sent as ``sha256=<lower-case hex digest>``:

``X-Tasksaga-Signature-V2`` (use this one) over the bytes
    ``v2\n<delivery id>\n<timestamp>\n<body>``: the ``X-Tasksaga-Delivery`` header, the
    ``X-Tasksaga-Timestamp`` header (decimal Unix seconds) and the raw request body exactly
    as received (before any JSON parsing), joined by newlines (which no header value can
    contain, so no two inputs sign the same bytes).
``X-Tasksaga-Signature`` (version 1, kept for existing receivers) over
    ``<timestamp>.<body>``. It does not cover the delivery id header, so a receiver that
    de-duplicates on that header can be fooled by a captured request sent again with another
    id: check version 2.

A receiver (this module has no tasksaga dependencies; copy it if you like) checks the
signature, that the timestamp is recent, and that the delivery id is new:
``tasksaga.notifier.receiver.verify_delivery`` does all three (docs/webhooks.md).

The delivery id stays the same on every attempt of one delivery (the timestamp and the
signatures do not), so it is the key to de-duplicate on.
"""

from __future__ import annotations

import hashlib
import hmac

SCHEME = "sha256"
DEFAULT_TOLERANCE_S = 300


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _signed_bytes(timestamp: int | str, body: bytes) -> bytes:
    return str(timestamp).strip().encode("ascii") + b"." + body


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The ``X-Tasksaga-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(_key(secret), _signed_bytes(timestamp, body), hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def sign_v2(secret: str | bytes, delivery_id: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Tasksaga-Signature-V2`` header value: delivery id, timestamp and body."""
    signed = b"v2\n" + _ascii(delivery_id) + b"\n" + _ascii(str(timestamp).strip()) + b"\n" + body
    return f"{SCHEME}={hmac.new(_key(secret), signed, hashlib.sha256).hexdigest()}"


def verify_v2(secret: str | bytes, delivery_id: str, timestamp: int | str, body: bytes,
              header: str | None) -> bool:
    """True when ``header`` is the version 2 signature of this delivery id, time and body."""
    if not header:
        return False
    try:
        expected = sign_v2(secret, delivery_id, timestamp, body)
    except ValueError:  # a header with a newline or non-ASCII bytes is simply wrong
        return False
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


def _ascii(text: str) -> bytes:
    if "\n" in text or "\r" in text:
        raise ValueError("signed header values cannot contain line breaks")
    return text.encode("ascii")  # UnicodeEncodeError is a ValueError


def verify(secret: str | bytes, timestamp: int | str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` at ``timestamp`` under ``secret``."""
    if not header:
        return False
    try:
        expected = sign(secret, timestamp, body)
    except UnicodeEncodeError:  # a timestamp header with non-ASCII bytes is simply wrong
        return False
    # Constant time: the comparison must not reveal how many leading characters matched.
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


def is_fresh(timestamp: int | str, now_s: int, tolerance_s: int = DEFAULT_TOLERANCE_S) -> bool:
    """True when ``timestamp`` is within ``tolerance_s`` of ``now_s`` (replay protection)."""
    try:
        sent = int(str(timestamp).strip())
    except ValueError:
        return False
    return abs(now_s - sent) <= tolerance_s

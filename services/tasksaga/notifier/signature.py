"""Webhook signatures: how the notifier signs a POST, and how a receiver checks it.

The signature is an HMAC-SHA256, keyed with the shared secret (TASKSAGA_WEBHOOK_SECRET), over
the bytes ``<timestamp>.<body>``: the decimal Unix timestamp from the ``X-Tasksaga-Timestamp``
header, a dot, and the raw request body exactly as received (before any JSON parsing). It is
sent as ``X-Tasksaga-Signature: sha256=<lower-case hex digest>``.

A receiver (this module has no tasksaga dependencies; copy it if you like)::

    from tasksaga.notifier.signature import is_fresh, verify

    ok = verify(secret, request.headers["X-Tasksaga-Timestamp"], raw_body,
                request.headers["X-Tasksaga-Signature"])
    ok = ok and is_fresh(request.headers["X-Tasksaga-Timestamp"], int(time.time()))

Signing the timestamp lets the receiver refuse replays of an old, captured request
(``is_fresh``); de-duplicate retries by ``X-Tasksaga-Delivery``, which stays the same on every
attempt of one delivery (the timestamp and signature do not).
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

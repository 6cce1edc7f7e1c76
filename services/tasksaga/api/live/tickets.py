"""Stream tickets: how a browser authenticates a live stream.

An EventSource (and a browser's WebSocket) cannot send an ``Authorization`` header, and a
long-lived token must never travel in a URL (it ends up in access logs, history, Referer).
So an authenticated call (``POST /tasks/{id}/stream-ticket``) issues a ticket: the caller's
identity, bound to that one task, valid for a short time (60 s by default), signed with a key
derived from the API's task-id secret (HMAC-SHA256). The stream URL carries the ticket; the
stream authorizes it exactly like the bearer token it stands for. Non-browser clients simply
send their bearer token or API key in the header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from tasksaga.core.authorization import Principal

_PURPOSE = b"tasksaga stream ticket v1"


class BadTicket(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TicketSigner:
    def __init__(self, secret: bytes, lifetime_s: int = 60) -> None:
        # Its own key: a ticket is never mistaken for anything else signed with the secret.
        self._key = hmac.new(secret, _PURPOSE, hashlib.sha256).digest()
        self.lifetime_s = lifetime_s

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()

    def issue(self, principal: Principal, task_id: str, now_s: float) -> str:
        body = json.dumps({
            "task": task_id, "sub": principal.subject, "ten": principal.tenant,
            "roles": sorted(principal.roles), "kind": principal.kind,
            "exp": int(now_s) + self.lifetime_s,
        }, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(body)}.{_b64(self._sign(body))}"

    def verify(self, ticket: str, task_id: str, now_s: float) -> Principal:
        """The principal the ticket stands for, if it is genuine, for this task, unexpired."""
        body_text, _, signature = ticket.partition(".")
        try:
            body, presented = _unb64(body_text), _unb64(signature)
        except ValueError as error:
            raise BadTicket("the stream ticket is malformed") from error
        if not hmac.compare_digest(presented, self._sign(body)):
            raise BadTicket("the stream ticket's signature is invalid")
        claims = json.loads(body)
        if claims["task"] != task_id:
            raise BadTicket("the stream ticket is for another task")
        if now_s >= claims["exp"]:
            raise BadTicket("the stream ticket has expired: ask for a new one "
                            "(POST /tasks/{id}/stream-ticket) and resume with after_version")
        return Principal(claims["sub"], claims["ten"], frozenset(claims["roles"]),
                         claims["kind"])

"""Hostile URLs: a NUL character anywhere in the path or the query string is refused at once.

PostgreSQL text never holds NUL (0x00), so a NUL reaching a query as a parameter (a task id in
the path, a status filter, an idempotency key) made the driver raise and the caller got 500. No
name, id, filter or cursor of this API contains one, so ``RefuseNul`` answers 400 before any
route runs, naming where the character was.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from tasksaga.api.body_limits import reply

# The query string arrives percent-encoded (the path decoded, in ``path``).
_ENCODED_NUL = b"%00"


class RefuseNul:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = _nul_in(scope)
            if where is not None:
                await reply(send, 400, f"the {where} contains a NUL character (%00); "
                                       "no name, id or filter of this API has one: remove it")
                return
        await self.app(scope, receive, send)


def _nul_in(scope: Scope) -> str | None:
    """'path' or 'query string' when it holds a NUL, else None."""
    if "\x00" in scope.get("path", ""):
        return "path"
    query: bytes = scope.get("query_string", b"")
    if _ENCODED_NUL in query or b"\x00" in query:
        return "query string"
    return None

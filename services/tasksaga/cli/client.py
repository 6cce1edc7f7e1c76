"""The CLI's HTTP client: one httpx client per profile, and API errors as readable messages."""

from __future__ import annotations

from typing import Any

import httpx

from tasksaga.cli.profile import CliProfile


class ApiError(RuntimeError):
    """The API refused a request; ``str()`` is the message to show the user."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def api_client(profile: CliProfile, transport: httpx.BaseTransport | None = None,
               timeout_s: float | None = None) -> httpx.Client:
    """A client of the profile's API with its token; ``timeout_s`` overrides the profile's
    (``watch`` reads a stream that may stay silent for a keep-alive period)."""
    headers = {"User-Agent": "tasksaga-cli"}
    if profile.token:
        headers["Authorization"] = f"Bearer {profile.token}"
    return httpx.Client(base_url=profile.url, headers=headers, transport=transport,
                        timeout=profile.timeout_s if timeout_s is None else timeout_s)


def checked(reply: httpx.Response) -> Any:
    """The reply's JSON body, or an :class:`ApiError` naming what the API said was wrong."""
    if reply.status_code < 400:
        return reply.json() if reply.content else None
    try:
        body = reply.json()
        detail = body.get("detail", body) if isinstance(body, dict) else body
    except ValueError:
        detail = reply.text
    raise ApiError(reply.status_code,
                   f"{reply.request.method} {reply.request.url.path} -> {reply.status_code}: "
                   f"{detail}")

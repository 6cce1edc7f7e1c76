"""Server-Sent Events, parsed line by line (the WHATWG event-stream format). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SseEvent:
    event: str  # "message" when the server names none
    data: str
    id: str | None  # the last id the stream set, carried by every later event


@dataclass
class SseParser:
    """Feed it the stream's lines (without their line break); it returns each complete event.

    Comments (``: keep-alive``) are skipped; ``retry:`` sets :attr:`retry_ms`, the delay the
    server asks clients to wait before they reconnect.
    """

    last_id: str | None = None
    retry_ms: int | None = None
    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> SseEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return SseEvent(event, "\n".join(data), self.last_id)

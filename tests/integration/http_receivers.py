"""Local HTTP(S) receivers for the notifier tests: a server on a thread, and a quiet handler.

Each test's handler decides what it answers; this module only serves it on ``host`` (any port),
optionally over TLS, and stops the server when the block ends.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A receiver's request handler that reads bodies, answers with no body and logs nothing."""

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output quiet


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1",
            tls: ssl.SSLContext | None = None) -> Iterator[ThreadingHTTPServer]:
    """Serve ``handler`` on ``host`` (a free port: ``server.server_address[1]``) until the
    block ends; with ``tls``, over HTTPS with that server context."""
    server = ThreadingHTTPServer((host, 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def port_of(server: ThreadingHTTPServer) -> int:
    port: int = server.server_address[1]
    return port

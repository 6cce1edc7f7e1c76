"""Toxiproxy, a TCP proxy that injects network faults, for the latency-and-loss chaos test (R14).

Built once with ``go install`` from the Go module proxy (pinned: ``TOXIPROXY_MODULE``) into the
stack's ``bin/toxiproxy-server`` (``go install`` names the binary after its package, ``server``,
so it is built in a scratch directory and renamed). A ``Toxiproxy`` is one server on its own API
port; its proxies and toxics are driven over the HTTP API (standard library only, as the rest of
tools/stack):

* ``POST /proxies`` ``{"name", "listen", "upstream", "enabled"}`` creates a proxy;
* ``POST /proxies/{proxy}/toxics`` ``{"name", "type", "stream", "toxicity", "attributes"}``
  adds a toxic; ``DELETE /proxies/{proxy}/toxics/{toxic}`` removes it.

A toxic's ``toxicity`` is the chance that it applies to one connection's direction (toxiproxy
rolls it once per connection and direction, when the connection opens or the toxic is added),
not to each packet.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .common import Settings, StackError
from .procs import Missing, Service, port_open, run, say, spawn_detached

TOXIPROXY_VERSION = "v2.12.0"
TOXIPROXY_PACKAGE = "github.com/Shopify/toxiproxy/v2/cmd/server"
TOXIPROXY_MODULE = f"{TOXIPROXY_PACKAGE}@{TOXIPROXY_VERSION}"
STREAMS = ("upstream", "downstream")


class Toxiproxy(Service):
    name = "toxiproxy"

    def __init__(self, settings: Settings, api_port: int, bin_dir: Path | None = None) -> None:
        super().__init__(settings)
        self.api_port = api_port
        self.bin_dir = bin_dir or settings.bin_dir

    @property
    def binary(self) -> Path:
        return self.bin_dir / "toxiproxy-server"

    @property
    def stamp(self) -> Path:
        return self.bin_dir / "toxiproxy.module"

    @property
    def port(self) -> int:
        return self.api_port

    @property
    def marker(self) -> str:
        return f"{self.binary} -host 127.0.0.1 -port {self.api_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def missing_prerequisites(self) -> list[Missing]:
        if self.installed() or shutil.which("go"):
            return []
        return [Missing("go", f"builds toxiproxy once ({TOXIPROXY_MODULE})",
                        "a current Go toolchain on PATH")]

    def installed(self) -> bool:
        try:
            return self.binary.exists() and self.stamp.read_text().strip() == TOXIPROXY_MODULE
        except OSError:
            return False

    def install(self) -> None:
        """Build the pinned server; a failed build raises StackError with go's output."""
        missing = self.missing_prerequisites()
        if missing:
            raise StackError("cannot build toxiproxy:\n" + "\n".join(map(str, missing)))
        say(f"building toxiproxy {TOXIPROXY_VERSION} with go install into {self.bin_dir}…")
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        self.stamp.unlink(missing_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="toxiproxy.", dir=self.bin_dir))
        try:
            run(["go", "install", TOXIPROXY_MODULE], what=f"go install {TOXIPROXY_MODULE}",
                env_extra={"GOBIN": str(scratch)}, timeout=900)
            (scratch / "server").replace(self.binary)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.stamp.write_text(TOXIPROXY_MODULE + "\n")

    def start(self) -> None:
        if not self.installed():
            self.install()
        self.s.logs_dir.mkdir(parents=True, exist_ok=True)
        self.ensure_ports_free()
        argv = [str(self.binary), "-host", "127.0.0.1", "-port", str(self.api_port)]
        # Info, not the default trace: one line per accepted connection, none per link event.
        self.write_pid(spawn_detached(argv, self.log, self.s.stack_dir, {"LOG_LEVEL": "info"}))

    def check_ready(self) -> bool:
        if not port_open(self.api_port):
            return False
        try:
            self._request("GET", "/version")
        except StackError:
            return False
        return True

    # -- the HTTP API ------------------------------------------------------------------------

    def create_proxy(self, name: str, listen_port: int, upstream_port: int) -> None:
        self._request("POST", "/proxies", {
            "name": name, "listen": f"127.0.0.1:{listen_port}",
            "upstream": f"127.0.0.1:{upstream_port}", "enabled": True})

    def add_toxic(self, proxy: str, name: str, kind: str, stream: str,
                  toxicity: float = 1.0, **attributes: int) -> None:
        if stream not in STREAMS:
            raise ValueError(f"stream {stream!r}: use one of {', '.join(STREAMS)}")
        if not 0.0 <= toxicity <= 1.0:
            raise ValueError(f"toxicity {toxicity}: a probability between 0 and 1")
        self._request("POST", f"/proxies/{proxy}/toxics", {
            "name": name, "type": kind, "stream": stream, "toxicity": toxicity,
            "attributes": attributes})

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._request("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def accepted_clients(self, proxy: str) -> int:
        """Connections the proxy has accepted so far (counted in the server's log): with
        long-lived clients, the reconnections a fault caused."""
        count = 0
        with contextlib.suppress(OSError), self.log.open() as lines:
            for line in lines:
                if '"Accepted client"' in line:
                    with contextlib.suppress(ValueError):
                        count += json.loads(line).get("name") == proxy
        return count

    def remove_toxics(self, proxy: str) -> None:
        """Remove every toxic of a proxy (its connections then flow freely again)."""
        toxics = self._request("GET", f"/proxies/{proxy}/toxics")
        for toxic in toxics if isinstance(toxics, list) else []:
            self._request("DELETE", f"/proxies/{proxy}/toxics/{toxic['name']}")

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            raise StackError(f"toxiproxy {method} {path}: HTTP {error.code}: "
                             f"{error.read().decode(errors='replace')[:300]}") from None
        except (urllib.error.URLError, OSError) as error:
            raise StackError(f"toxiproxy {method} {path}: {error}") from None
        return json.loads(text) if text.strip() else None

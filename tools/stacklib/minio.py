"""MinIO built with go install, one drive under the stack directory."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path

from .common import MINIO_MODULE
from .procs import Missing, Service, run, say, spawn_detached


class Minio(Service):
    name = "minio"

    @property
    def binary(self) -> Path:
        return self.s.bin_dir / "minio"

    @property
    def stamp(self) -> Path:
        return self.s.bin_dir / "minio.module"

    @property
    def data(self) -> Path:
        return self.s.stack_dir / "minio" / "data"

    @property
    def port(self) -> int:
        return self.s.minio_port

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.s.minio_port, self.s.minio_console_port)

    @property
    def marker(self) -> str:
        return str(self.data)

    def missing_prerequisites(self) -> list[Missing]:
        if self.installed() or shutil.which("go"):
            return []
        return [
            Missing(
                "go",
                f"builds MinIO once ({MINIO_MODULE}; needs Go >= 1.24)",
                "a current Go toolchain on PATH (Debian 12's golang package is too old)",
            )
        ]

    def installed(self) -> bool:
        try:
            return self.binary.exists() and self.stamp.read_text().strip() == MINIO_MODULE
        except OSError:
            return False

    def install(self) -> None:
        say(
            f"building MinIO with go install into {self.s.bin_dir} "
            "(first run: ~3 min with a cold Go cache, seconds with a warm one)…"
        )
        self.s.bin_dir.mkdir(parents=True, exist_ok=True)
        self.stamp.unlink(missing_ok=True)
        run(
            ["go", "install", MINIO_MODULE],
            what=f"go install {MINIO_MODULE}",
            env_extra={"GOBIN": str(self.s.bin_dir)},
        )
        self.stamp.write_text(MINIO_MODULE + "\n")

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.binary),
            "server",
            str(self.data),
            "--address",
            f"127.0.0.1:{self.s.minio_port}",
            "--console-address",
            f"127.0.0.1:{self.s.minio_console_port}",
        ]
        credentials = {
            "MINIO_ROOT_USER": self.s.minio_access_key,
            "MINIO_ROOT_PASSWORD": self.s.minio_secret_key,
            # No internet here; don't let it look for updates.
            "MINIO_UPDATE": "off",
        }
        self.write_pid(spawn_detached(argv, self.log, self.data.parent, credentials))

    def check_ready(self) -> bool:
        url = f"http://127.0.0.1:{self.s.minio_port}/minio/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False


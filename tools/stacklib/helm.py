"""helm, built once with ``go install`` at a pinned version into the stack's bin directory.

The chart tests (tests/unit/test_helm_chart.py) lint and render deploy/helm/tasksaga with it;
``tools/stack helm`` installs it and prints its path. Idempotent: a binary whose stamp names
the pinned module is kept; another version is rebuilt. The build goes to a temporary
directory first and is renamed into place, so two test runs installing at once never leave
a half-written binary.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .common import HELM_MODULE, MissingPrerequisite, Settings
from .procs import run, say


def helm_binary(settings: Settings) -> Path:
    return settings.bin_dir / "helm"


def helm_stamp(settings: Settings) -> Path:
    return settings.bin_dir / "helm.module"


def helm_installed(settings: Settings) -> bool:
    try:
        return (helm_binary(settings).exists()
                and helm_stamp(settings).read_text().strip() == HELM_MODULE)
    except OSError:
        return False


def ensure_helm(settings: Settings) -> Path:
    """The pinned helm binary, built with go install on first use."""
    binary = helm_binary(settings)
    if helm_installed(settings):
        return binary
    if not shutil.which("go"):
        raise MissingPrerequisite(
            f"go is needed to build helm once ({HELM_MODULE}): install a current Go "
            "toolchain (>= 1.24) and put it on PATH")
    say(f"building helm with go install into {settings.bin_dir} "
        "(first run: a few minutes with a cold Go cache, seconds with a warm one)…")
    settings.bin_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.bin_dir, prefix=".helm-build-") as scratch:
        run(["go", "install", HELM_MODULE], what=f"go install {HELM_MODULE}",
            env_extra={"GOBIN": scratch}, timeout=1800)
        os.replace(Path(scratch) / "helm", binary)
    helm_stamp(settings).write_text(HELM_MODULE + "\n")
    return binary

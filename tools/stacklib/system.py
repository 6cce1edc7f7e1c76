"""Host programs: Java, PostgreSQL binaries, apt-get, running as the postgres user."""

from __future__ import annotations

import glob
import os
import shutil
import stat
from pathlib import Path

from .common import MissingPrerequisite, StackError
from .procs import run, say


def java() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def require_java() -> str:
    path = java()
    if path is None:
        raise MissingPrerequisite(
            "java not found (install: apt-get install -y openjdk-17-jre-headless)"
        )
    return path


def pg_bin_dir() -> Path | None:
    """The newest installed PostgreSQL major's bin dir (Debian layout)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")

    def major(path: str) -> float:
        try:
            return float(Path(path).parts[-3])
        except ValueError:
            return 0.0

    return Path(max(found, key=major)).parent if found else None


# Programs the example step handlers run (the video pipeline), from Debian's packages.
WORKER_PROGRAMS = {"ffmpeg": "ffmpeg", "ffprobe": "ffmpeg"}


def install_worker_programs() -> None:
    packages = sorted({pkg for prog, pkg in WORKER_PROGRAMS.items() if shutil.which(prog) is None})
    if packages:
        say(f"installing {', '.join(packages)} from Debian packages (first run, ~30 s)…")
        apt_install(*packages)


# The browser the dashboard's test drives (tests/e2e/test_dashboard.py): Debian's chromium,
# since Playwright's own browser download is not available everywhere the tests run.
TEST_BROWSER = Path("/usr/bin/chromium")


def install_test_browser(browser: Path = TEST_BROWSER) -> bool:
    """Install chromium when ``browser`` is missing; True if it installed it."""
    if browser.exists():
        return False
    say("installing chromium from Debian packages (the dashboard's browser test; first run, "
        "~1 min)…")
    apt_install("chromium")
    if not browser.exists():
        raise StackError(f"apt-get installed chromium but there is no {browser}")
    return True


def apt_install(*packages: str) -> None:
    if not glob.glob("/var/lib/apt/lists/*_Packages*"):
        apt_get("update")
    try:
        apt_get("install", "-y", *packages)
    except StackError:
        # Stale package lists are the usual cause; refresh once and retry.
        apt_get("update")
        apt_get("install", "-y", *packages)


def apt_get(*args: str) -> None:
    run(
        ["apt-get", *args],
        what=f"apt-get {args[0]}",
        env_extra={"DEBIAN_FRONTEND": "noninteractive"},
    )


def as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; as any other user it simply runs as that user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def allow_traverse(path: Path) -> None:
    """Let the postgres user reach ``path``: add o+x (search, not list) to ancestors lacking it.

    Needed when the repo lives under a private dir such as /root.
    """
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            say(f"  chmod o+x {parent} (so the postgres user can reach {path})")
            parent.chmod(mode | stat.S_IXOTH)


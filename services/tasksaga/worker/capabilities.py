"""The capabilities this worker has: those its settings list, and those it detects.

A capability the worker can detect (ffmpeg: an executable on PATH) is trusted only when
detected: listing it in TASKSAGA_WORKER_CAPABILITIES without having it is refused at start-up,
since the steps routed to it would fail on every attempt. Others (gpu, ...) cannot be
detected portably and are taken from the settings as they are.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping

from tasksaga.core.capabilities import MissingCapabilities, capability_set, describe

Which = Callable[[str], "str | None"]

#: Capability -> the executable whose presence on PATH it means.
EXECUTABLES: Mapping[str, str] = {"ffmpeg": "ffmpeg"}


def detected_capabilities(which: Which = shutil.which) -> frozenset[str]:
    return frozenset(name for name, program in EXECUTABLES.items() if which(program))


def worker_capabilities(configured: Iterable[str], detect: bool = True,
                        which: Which = shutil.which) -> frozenset[str]:
    """The configured capabilities, checked, with the detected ones (``detect``)."""
    listed = capability_set(configured)
    found = detected_capabilities(which)
    absent = {name for name in listed if name in EXECUTABLES and name not in found}
    if absent:
        raise MissingCapabilities(
            f"TASKSAGA_WORKER_CAPABILITIES lists {describe(absent)}, but "
            + ", ".join(f"{EXECUTABLES[n]!r}" for n in sorted(absent))
            + " is not on this worker's PATH: install it, or remove it from the list")
    return listed | found if detect else listed

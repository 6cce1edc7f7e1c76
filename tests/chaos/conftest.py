"""The chaos suite: real processes, real servers, injected faults (see tests/chaos/harness.py)."""

from __future__ import annotations

import pytest

from tests.chaos.harness import scale

pytestmark = pytest.mark.chaos


def pytest_report_header() -> str:
    return f"chaos scale: {scale()} (CHAOS_SCALE=reduced|full)"

"""One system (the four services as processes) for every test file of this folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.api_security.secure_api import LIMITS, Secure
from tests.e2e.conftest import running_system


# Package scope: the files of this folder were one module sharing one system; starting the
# services once per file would add their start-up to every file for nothing.
@pytest.fixture(scope="package")
def secure(stack_env: dict[str, str]) -> Iterator[Secure]:
    with running_system(stack_env, **LIMITS) as system:
        yield Secure(system)

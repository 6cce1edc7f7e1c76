"""A rebuild's batches run with the cyclic collector paused, and leave it as they found it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tasksaga.adapters.gc_pause import cyclic_gc_paused


@pytest.fixture
def collector_enabled() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


@pytest.mark.usefixtures("collector_enabled")
def test_the_collector_is_paused_inside_and_runs_again_after() -> None:
    with cyclic_gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_enabled")
def test_the_collector_runs_again_after_a_failing_batch() -> None:
    with pytest.raises(ValueError), cyclic_gc_paused():
        raise ValueError("a batch that failed")
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_enabled")
def test_a_collector_someone_else_disabled_stays_disabled() -> None:
    gc.disable()
    with cyclic_gc_paused():
        pass
    assert not gc.isenabled()

"""Pausing Python's cyclic garbage collector around one batch of a replay.

Decoding a batch allocates a few container objects per event (records, envelopes, payloads)
that all live until the batch is folded; every young-generation collection walks them again,
and at the scale of a rebuild (a million events, tens of thousands of folded states kept) the
collector took ~40 % of decode + fold. None of these objects form cycles (reference counting
frees them), so a rebuild pauses the collector per batch; it runs again between batches, so
a cycle made by other code waits one batch at most.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """No cyclic collection inside the block; the collector's former state after it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()

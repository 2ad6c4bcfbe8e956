"""Python's full garbage collections kept out of jobs.

A process that has imported torch, diffusers and transformers and loaded a model
holds about half a million Python objects (515,000 with the starter loaded).
CPython's cyclic collector walks every one of them in a full (generation 2)
collection, which it starts by itself after enough allocations: **342 ms**,
measured in the middle of a live job on the starter (about one job in 25 to 60
of the live benchmark) - two whole live jobs, and the p95 of stroke-to-picture.

After a model loads, :func:`settle` moves everything alive out of the
collector's sight (``gc.freeze``): those objects live as long as the model
anyway.  Full collections then walk only what came after (a millisecond).
Before the model is dropped, :func:`release` hands them back
(``gc.unfreeze``) so that its reference cycles are collected with it - a model
switch frees its memory as before.  Reference counting, which frees almost
everything in Python, is untouched.
"""
from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("impasto.engine")


def settle() -> float:
    """Collect once (what was frozen before included), then freeze what is left; returns the seconds.

    Unfreezing first means no garbage outlives the next model load, even where the
    engine that froze it is gone without a switch (tests, scripts with several engines).
    """
    t0 = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    took = time.perf_counter() - t0
    log.info("%d long-lived objects moved out of the garbage collector's full passes (%.0f ms)",
             gc.get_freeze_count(), took * 1000)
    return took


def release() -> None:
    """Give frozen objects back to the collector (before a model is dropped)."""
    gc.unfreeze()


def collect() -> None:
    """A full collection now (after a model was dropped: its cycles go with it)."""
    gc.collect()

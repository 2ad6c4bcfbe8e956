"""Per-call overheads of diffusers removed where the answer cannot change.

diffusers' ``Attention.forward`` asks ``inspect.signature`` for its
processor's ``__call__`` on every call, to filter ``cross_attention_kwargs``.
The answer depends only on the processor's class, yet building it costs about
0.1 ms each time: the starter's UNet has 14 attention layers, so a live job of
4 steps spent ~6 ms of its ~110 in ``inspect`` (cProfile, one thread).  On a
GPU, where a step of a real model takes tens of milliseconds of Python, it is
the same cost per layer.

:func:`cache_processor_signatures` gives that module an ``inspect`` whose
``signature`` remembers the answer per function (a bound method's signature
is its function's minus ``self``, the same for every instance); everything
else is the standard module.  Callables that are not methods are not cached.
Installed once when the engine's pipelines module is imported; a diffusers
release without that module attribute is left alone.
"""
from __future__ import annotations

import inspect
import logging
import types

log = logging.getLogger("impasto.engine")

_CACHE: dict = {}   # function -> the signature of its bound methods (a handful of processor classes)

def cached_signature(obj, *args, **kwargs) -> inspect.Signature:
    """``inspect.signature(obj)``, remembered per function for bound methods (without extra arguments)."""
    func = getattr(obj, "__func__", None)
    if func is None or args or kwargs or not isinstance(obj, types.MethodType):
        return inspect.signature(obj, *args, **kwargs)
    hit = _CACHE.get(func)        # keyed by the function alone: the first bound method computes it
    if hit is None:
        hit = _CACHE[func] = inspect.signature(obj)
    return hit


class _InspectWithCachedSignature(types.ModuleType):
    """The ``inspect`` module with :func:`cached_signature` as ``signature``."""

    def __init__(self):
        super().__init__("inspect")

    def __getattr__(self, name):
        return getattr(inspect, name)

    signature = staticmethod(cached_signature)


def cache_processor_signatures() -> bool:
    """Install the cached ``signature`` in diffusers' attention module; True when installed."""
    try:
        from diffusers.models import attention_processor
    except Exception:  # pragma: no cover - diffusers missing is reported where pipelines load
        return False
    current = getattr(attention_processor, "inspect", None)
    if isinstance(current, _InspectWithCachedSignature):
        return True
    if current is not inspect:
        log.info("diffusers' attention module has no plain inspect: signatures left uncached")
        return False
    attention_processor.inspect = _InspectWithCachedSignature()
    return True

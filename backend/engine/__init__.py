"""The torch side of Impasto: models, pipelines, samplers, previews, concepts.

Never imports zmq or Qt: the daemon drives it through :class:`Engine` and
:class:`JobHooks`, and so can a script or a test.

This package file is *lazy* (PEP 562): ``Engine`` and ``JOB_RUNNERS`` are
imported on first access.  The daemon's I/O thread imports light modules of
this package (``models`` for the models list, ``errors``) and must never pay
torch's import (seconds, during which no request is answered); only the
worker thread touches :class:`Engine`.  ``errors`` and ``hooks`` import no
torch and are loaded eagerly.
"""
from .errors import Cancelled, EngineError  # noqa: F401
from .hooks import JobHooks  # noqa: F401

_LAZY = {"Engine": ".engine", "JOB_RUNNERS": ".runners", "Output": ".runners"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Seam where personal concepts (LoRA adapters) are switched on for a job.

``activate`` is called by :meth:`Engine.run` before every job with the
request's ``[(name, weight)]`` list.  This first version knows no concepts:
any requested concept is a typed ``unknown_concept`` error.
"""
from __future__ import annotations

from typing import List, Tuple

from impasto.protocol.messages import ErrorCode

from .errors import EngineError


def activate(engine, loaded, concepts: List[Tuple[str, float]], hooks) -> None:
    for i, (name, _weight) in enumerate(concepts):
        raise EngineError(ErrorCode.UNKNOWN_CONCEPT, f"concepts[{i}]: no concept named {name!r} in the library",
                          f"concepts[{i}]")

"""Typed engine failures.  The daemon maps them onto protocol error events."""
from __future__ import annotations

from typing import Optional

from impasto.protocol.messages import ErrorCode, ProtocolError


class EngineError(ProtocolError):
    """A request the engine cannot serve (unknown model, bad image...)."""


class Cancelled(Exception):
    """Raised inside the denoise loop when the job's cancel flag is set.

    ``steps`` is how many steps had run (None: the job never started).
    """

    def __init__(self, steps: Optional[int] = None):
        super().__init__("cancelled" if steps is None else f"cancelled after {steps} steps")
        self.steps = steps


def unknown_model(name: str, known: list) -> EngineError:
    listing = ", ".join(known) if known else "none installed"
    return EngineError(ErrorCode.UNKNOWN_MODEL, f"model: {name!r} is not installed (available: {listing})", "model")

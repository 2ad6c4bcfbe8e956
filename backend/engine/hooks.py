"""The named points where the daemon (or a test) hooks into a running job.

The engine knows nothing of sockets: it calls ``progress`` after every step
and asks ``cancelled()`` before every step and before the VAE decode.  The
loops record how many steps actually ran in ``steps_done``, so a cancel can
report it (the ``cancelled`` event's ``steps``): the step in flight when the
cancel lands sends no progress event, so counting events would be one short.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from PIL import Image

from .errors import Cancelled


def _never() -> bool:
    return False


def _ignore(step: int, total: int, preview: Optional[Image.Image] = None, loss: Optional[float] = None,
            stage: str = "") -> None:
    return None


@dataclass
class JobHooks:
    cancelled: Callable[[], bool] = _never
    progress: Callable[..., None] = _ignore
    want_preview: bool = False
    preview_every: int = 1
    warnings: list = field(default_factory=list)
    steps_done: int = 0          # denoise (or training) steps that ran, kept by the loops
    control: Optional[object] = None  # the job's prepared control units (:mod:`.control`), set by Engine.run

    def check(self) -> None:
        """Raise :class:`Cancelled` (carrying the steps run so far) when the job was cancelled."""
        if self.cancelled():
            raise Cancelled(self.steps_done)

"""The named points where the daemon (or a test) hooks into a running job.

The engine knows nothing of sockets: it calls ``progress`` after every step
and asks ``cancelled()`` before every step and before the VAE decode.  The
loops record how many steps actually ran in ``steps_done``, so a cancel can
report it (the ``cancelled`` event's ``steps``): the step in flight when the
cancel lands sends no progress event, so counting events would be one short.

Warnings go through :meth:`JobHooks.warn` (or ``hooks.warnings.append``,
which training and other helpers that take the list use): kept for the
result (as before) and handed to ``on_warning`` at once, so the daemon
sends each one in a progress event while the job runs - an artist waiting
on a long job hears "size changed" or "concept trigger missing" at the
start, not at the end.
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


def _unheard(text: str) -> None:
    return None


class HeardList(list):
    """A list of warnings that tells ``on_add`` about each one appended (``append``, ``extend``, ``+=``)."""

    def __init__(self, items=(), on_add: Callable[[str], None] = _unheard):
        super().__init__(items)
        self.on_add = on_add

    def append(self, text) -> None:
        super().append(text)
        self.on_add(text)

    def extend(self, items) -> None:
        for text in items:
            self.append(text)

    def __iadd__(self, items):
        self.extend(items)
        return self


@dataclass
class JobHooks:
    cancelled: Callable[[], bool] = _never
    progress: Callable[..., None] = _ignore
    want_preview: bool = False
    preview_every: int = 1
    warnings: list = field(default_factory=list)
    steps_done: int = 0          # denoise (or training) steps that ran, kept by the loops
    control: Optional[object] = None  # the job's prepared control units (:mod:`.control`), set by Engine.run
    on_warning: Callable[[str], None] = _unheard

    def __post_init__(self) -> None:
        self.warnings = HeardList(self.warnings, lambda text: self.on_warning(text))

    def warn(self, text: str) -> None:
        """Tell the artist something about this job: now (``on_warning``) and in the result."""
        self.warnings.append(text)

    def check(self) -> None:
        """Raise :class:`Cancelled` (carrying the steps run so far) when the job was cancelled."""
        if self.cancelled():
            raise Cancelled(self.steps_done)

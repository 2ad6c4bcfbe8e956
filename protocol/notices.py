"""What a waiting artist is told, in the same words by every front end.

Two things every client shows while a job is pending, decided once here:

* **Queue position**: the daemon's ``accepted.position`` counts the jobs
  ahead (the running one included); :func:`waiting_words` turns it into
  ``waiting (2 ahead)`` - the CLI, Krita, GIMP and the canvas used to say it
  four ways.
* **Warnings**: the daemon sends each warning (size changed, trigger word
  missing, prompt read in chunks...) in a progress event the moment it is
  raised, and repeats them all in the result.  :class:`Heard` remembers what
  was shown so a client shows each warning once - live, or from the result
  when an older daemon (or a job that ran no step) sent it only there.

Standard library only (vendored into Krita and GIMP).
"""
from __future__ import annotations

from typing import Iterable, List


def waiting_words(position) -> str:
    """``waiting (n ahead)`` for a queued job; "" when it runs now (position 0 or unknown)."""
    try:
        ahead = int(position or 0)
    except (TypeError, ValueError):
        return ""
    return f"waiting ({ahead} ahead)" if ahead > 0 else ""


class Heard:
    """The warnings of one job already shown to the artist (in order)."""

    def __init__(self) -> None:
        self.shown: List[str] = []

    def fresh(self, warnings: Iterable[str]) -> List[str]:
        """The ones of ``warnings`` not shown yet; they count as shown from now on."""
        out = []
        for text in warnings or ():
            text = str(text)
            if text not in self.shown:
                self.shown.append(text)
                out.append(text)
        return out


def only_warnings(event) -> bool:
    """A progress event that carries warnings and no step of its own (nothing counted yet: total 0)."""
    return bool(getattr(event, "warnings", None)) and not getattr(event, "total", 0)

"""The generation settings an artist edits: the shared client-core :class:`Settings`.

The panel reads and writes one; every staged candidate and every generated
layer keeps the one it was made with, so "use these settings again" is a
copy, and a project file stores them as JSON.  The knobs and their defaults
are the protocol's (:mod:`impasto.protocol.settings`); the canvas only adds
the staging bar's one-line summary.
"""
from __future__ import annotations

from impasto.protocol.settings import Settings


class GenerationSettings(Settings):
    """:class:`Settings` plus how the staging bar describes a result made with it."""

    def summary(self, mode: str = "") -> str:
        """One line for the staging bar: how this result was made."""
        parts = [self.sampler, f"{self.steps} steps", f"CFG {self.cfg_scale:g}"]
        if mode in ("refine", "inpaint"):
            parts.append(f"strength {self.strength:.2f}")
        concepts = self.active_concepts()
        if concepts:
            parts.append(", ".join(f"{n}:{w:g}" for n, w in concepts))
        if self.model:
            parts.append(self.model)
        return " · ".join(parts)

"""The generation settings an artist edits, as one plain value.

The panel reads and writes a :class:`GenerationSettings`; every staged
candidate and every generated layer keeps the one it was made with, so
"use these settings again" is a copy, and a project file stores them as JSON.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Tuple

from impasto.protocol.messages import FILL_MODES, SAMPLERS


@dataclass
class GenerationSettings:
    prompt: str = ""
    negative_prompt: str = ""
    sampler: str = "euler_a"
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = -1                     # -1: a new random seed each time
    strength: float = 0.75             # denoising strength for Refine and Inpaint
    batch_size: int = 1
    model: str = ""                    # "": the daemon's default model
    concepts: List[Tuple[str, float]] = field(default_factory=list)
    mask_blur: int = 8                 # feather of the inpainting mask, px
    grow: int = 0                      # grow (or, negative, shrink) the mask, px
    fill: str = "original"             # what the masked area starts from
    padding: int = 32                  # "only masked" context around the mask, px
    whole_picture: bool = False        # inpaint with the whole picture as context

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["concepts"] = [[name, float(w)] for name, w in self.concepts]
        return d

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "GenerationSettings":
        """Tolerant: unknown keys are ignored and values of the wrong type keep their defaults."""
        out = cls()
        if not isinstance(data, dict):
            return out
        for f in fields(cls):
            if f.name not in data:
                continue
            value, default = data[f.name], getattr(out, f.name)
            try:
                if f.name == "concepts":
                    value = [(str(n), float(w)) for n, w in value]
                elif isinstance(default, bool):
                    value = bool(value)
                elif isinstance(default, int):
                    value = int(value)
                elif isinstance(default, float):
                    value = float(value)
                elif isinstance(default, str):
                    value = str(value)
            except (TypeError, ValueError):
                continue
            setattr(out, f.name, value)
        if out.sampler not in SAMPLERS:
            out.sampler = cls.sampler
        if out.fill not in FILL_MODES:
            out.fill = cls.fill
        return out

    def summary(self, mode: str = "") -> str:
        """One line for the staging bar: how this result was made."""
        parts = [self.sampler, f"{self.steps} steps", f"CFG {self.cfg_scale:g}"]
        if mode in ("refine", "inpaint"):
            parts.append(f"strength {self.strength:.2f}")
        if self.concepts:
            parts.append(", ".join(f"{n}:{w:g}" for n, w in self.concepts))
        if self.model:
            parts.append(self.model)
        return " · ".join(parts)

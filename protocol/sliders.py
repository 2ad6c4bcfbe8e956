"""Concept Sliders in the client core: which concepts are sliders, their range, labels and weights.

Why here: the Krita docker, the canvas and the GIMP dialog all show a slider
for each slider concept, and the CLI lists them; what a slider is, how its
weight maps to an integer widget position, how a weight reads and how slider
weights travel in :class:`~.settings.Settings` is decided once, here, and the
front ends only draw it.  A slider is a concept whose library metadata holds a
``slider`` dict (``backend/concepts/slider_train.py`` writes it; a kohya
export carries it along).  Standard library only, like all of ``protocol/``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

from .errors import PlanError
from .messages import SLIDER_WEIGHT_RANGE

SLIDER_MIN, SLIDER_MAX = SLIDER_WEIGHT_RANGE
STEP = 0.05                                   # one widget notch
POSITIONS = (round(SLIDER_MIN / STEP), round(SLIDER_MAX / STEP))   # integer range for Qt / GTK sliders


@dataclass(frozen=True)
class SliderSpec:
    """One slider concept as a widget shows it."""

    name: str
    low: str            # what -1 means ("a frowning person"; "less" for a picture-pair slider)
    high: str           # what +1 means
    mode: str           # "text" | "images"
    minimum: float = SLIDER_MIN
    maximum: float = SLIDER_MAX

    @property
    def tooltip(self) -> str:
        return (f"Concept Slider {self.name!r}: left toward {self.low!r}, right toward {self.high!r}; "
                f"0 leaves the picture as the model paints it ({self.minimum:+g}..{self.maximum:+g})")


def is_slider(concept: Mapping) -> bool:
    """Whether a concept (a ``Concepts`` reply entry) is a Concept Slider."""
    return isinstance(concept, Mapping) and isinstance(concept.get("slider"), Mapping)


def _text(value, default: str) -> str:
    return " ".join(str(value).split())[:80] if isinstance(value, str) and value.strip() else default


def spec(concept: Mapping) -> SliderSpec:
    """The widget's view of a slider concept (labels cut to 80 characters; the range is the protocol's)."""
    meta = concept.get("slider") or {}
    mode = meta.get("mode") if meta.get("mode") in ("text", "images") else "images"
    if mode == "text":
        low, high = _text(meta.get("negative"), "less"), _text(meta.get("positive"), "more")
    else:
        low, high = "less", "more"
    return SliderSpec(name=str(concept.get("name", "")), low=low, high=high, mode=mode)


def slider_specs(concepts: Iterable[Mapping]) -> List[SliderSpec]:
    """The sliders among a library listing, by name."""
    return sorted((spec(c) for c in concepts if is_slider(c) and c.get("name")), key=lambda s: s.name.lower())


def describe(concept: Mapping) -> str:
    """One line for listings: ``text slider: 'a frowning person' <-> 'a smiling person'``."""
    s = spec(concept)
    return f"{s.mode} slider: {s.low!r} <-> {s.high!r} ({s.minimum:+g}..{s.maximum:+g})"


def clamp(weight: float) -> float:
    return max(SLIDER_MIN, min(SLIDER_MAX, float(weight)))


def to_position(weight: float) -> int:
    """A weight -> the nearest integer widget position (``POSITIONS``)."""
    return int(round(clamp(weight) / STEP))


def from_position(position: int) -> float:
    """A widget position -> its weight (rounded to the notch, so 0.1 + 0.2 shows as 0.30)."""
    lo, hi = POSITIONS
    return round(max(lo, min(hi, int(position))) * STEP, 4)


def format_weight(weight: float) -> str:
    """``+1.50`` / ``-0.75`` / ``0.00``: signed, so the direction is read at a glance."""
    w = round(float(weight), 2)
    return "0.00" if w == 0 else f"{w:+.2f}"


def check_weight(name: str, weight: float) -> float:
    """A slider's weight, or a :class:`PlanError` naming it (the daemon refuses the same values)."""
    if not SLIDER_MIN <= weight <= SLIDER_MAX:
        raise PlanError(f"slider {name!r}: weight {weight:g} is outside {SLIDER_MIN:+g}..{SLIDER_MAX:+g}",
                        "concepts")
    return float(weight)


def split(pairs: Sequence[Tuple[str, float]], slider_names: Iterable[str]
          ) -> Tuple[List[Tuple[str, float]], Dict[str, float]]:
    """A settings' concept pairs -> (plain concepts, {slider: weight}): what a panel shows in its two places."""
    names = set(slider_names)
    plain = [(n, float(w)) for n, w in pairs if n not in names]
    sliders = {n: float(w) for n, w in pairs if n in names}
    return plain, sliders


def merge(plain: Sequence[Tuple[str, float]], sliders: Mapping[str, float]) -> List[Tuple[str, float]]:
    """Plain concepts + slider weights -> the pairs a job carries; a slider at 0 is left out (it is off),
    each slider weight checked (:func:`check_weight`)."""
    out = [(n, float(w)) for n, w in plain if n not in sliders]
    for name in sorted(sliders):
        w = float(sliders[name])
        if w != 0:
            out.append((name, check_weight(name, w)))
    return out

"""Shape families of the starter domains: one geometric definition per family.

Every family is a list of (polygon, paint) parts in unit coordinates (centre at
the origin, circumradius about 1, upright, image y pointing down); ``paint`` is
True to fill with the shape's colour, False to cut back to the background (a
ring's hole, a crescent's bite).  The renderer (``draw``) and the strict judges
(``judges.py``) use the same definition, so a family is defined exactly once.

Why these families: the richer starter trains on ``TRAIN_FAMILIES`` (many kinds
of shape, so it gets a general notion of "a shape"), and the concept benchmark
teaches ``HELD_OUT_FAMILIES`` as new concepts: no starter ever sees them in
training.  ``TUNE_FAMILIES`` (two of the held-out ones) are the only families a
concept recipe may be tuned on; the benchmark reports on ``REPORT_FAMILIES``.
The split is fixed here, before any tuning.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Sequence, Tuple

from PIL import Image, ImageDraw

Point = Tuple[float, float]
Part = Tuple[List[Point], bool]

TRAIN_FAMILIES: Tuple[str, ...] = (
    "circle", "square", "triangle", "diamond", "oval", "rectangle",
    "semicircle", "pentagon", "hourglass", "trapezoid", "teardrop", "chevron",
)
HELD_OUT_FAMILIES: Tuple[str, ...] = ("star", "plus", "heart", "arrow", "crescent", "ring", "hexagon")
#: the recipe was tuned on stars before this benchmark existed; plus is the second
TUNE_FAMILIES: Tuple[str, ...] = ("star", "plus")
REPORT_FAMILIES: Tuple[str, ...] = tuple(f for f in HELD_OUT_FAMILIES if f not in TUNE_FAMILIES)
FAMILIES: Tuple[str, ...] = TRAIN_FAMILIES + HELD_OUT_FAMILIES

#: families drawn upright only (rotation would make them another family or is meaningless)
NO_ROTATION = frozenset({"circle", "ring"})


def _regular(n: int, start_deg: float, r: float = 1.0) -> List[Point]:
    return [(r * math.cos(math.radians(start_deg + 360.0 * k / n)),
             r * math.sin(math.radians(start_deg + 360.0 * k / n))) for k in range(n)]


def _ellipse(a: float, b: float, cx: float = 0.0, cy: float = 0.0, n: int = 72) -> List[Point]:
    return [(cx + a * math.cos(2 * math.pi * k / n), cy + b * math.sin(2 * math.pi * k / n)) for k in range(n)]


def _semicircle() -> List[Point]:
    # upper half disc, shifted down so that its bounding box is centred
    pts = [(math.cos(math.pi + math.pi * k / 36), math.sin(math.pi + math.pi * k / 36) + 0.5) for k in range(37)]
    return pts


def _star() -> List[Point]:
    return [((1.0 if k % 2 == 0 else 0.45) * math.cos(math.radians(-90 + 36 * k)),
             (1.0 if k % 2 == 0 else 0.45) * math.sin(math.radians(-90 + 36 * k))) for k in range(10)]


def _plus() -> List[Point]:
    a, w = 0.95, 0.3
    return [(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w)]


def _heart() -> List[Part]:
    return [
        (_ellipse(0.5, 0.5, -0.45, -0.3), True),
        (_ellipse(0.5, 0.5, 0.45, -0.3), True),
        ([(-0.93, -0.12), (0.93, -0.12), (0.0, 0.95)], True),
    ]


def _arrow() -> List[Point]:
    return [(-1.0, -0.2), (0.15, -0.2), (0.15, -0.6), (1.0, 0.0), (0.15, 0.6), (0.15, 0.2), (-1.0, 0.2)]


def _teardrop() -> List[Part]:
    return [(_ellipse(0.6, 0.6, 0.0, 0.35), True), ([(0.0, -1.0), (0.53, 0.07), (-0.53, 0.07)], True)]


def _chevron() -> List[Point]:
    return [(-1.0, 0.15), (0.0, -0.6), (1.0, 0.15), (1.0, 0.6), (0.0, -0.15), (-1.0, 0.6)]


_PARTS: Dict[str, Callable[[], List[Part]]] = {
    "circle": lambda: [(_ellipse(1.0, 1.0), True)],
    "square": lambda: [(_regular(4, 45), True)],
    "triangle": lambda: [(_regular(3, -90), True)],
    "diamond": lambda: [([(0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0)], True)],
    "oval": lambda: [(_ellipse(1.0, 0.55), True)],
    "rectangle": lambda: [([(-0.92, -0.45), (0.92, -0.45), (0.92, 0.45), (-0.92, 0.45)], True)],
    "semicircle": lambda: [(_semicircle(), True)],
    "pentagon": lambda: [(_regular(5, -90), True)],
    # (an octagon was tried first: at these sizes no template tells it from a circle)
    "hourglass": lambda: [([(-0.7, -1.0), (0.7, -1.0), (0.1, 0.0), (0.7, 1.0), (-0.7, 1.0), (-0.1, 0.0)], True)],
    "trapezoid": lambda: [([(-1.0, 0.5), (1.0, 0.5), (0.5, -0.5), (-0.5, -0.5)], True)],
    "teardrop": _teardrop,
    "chevron": lambda: [(_chevron(), True)],
    "star": lambda: [(_star(), True)],
    "plus": lambda: [(_plus(), True)],
    "heart": _heart,
    "arrow": lambda: [(_arrow(), True)],
    "crescent": lambda: [(_ellipse(1.0, 1.0), True), (_ellipse(0.85, 0.85, 0.45, 0.0), False)],
    "ring": lambda: [(_ellipse(1.0, 1.0), True), (_ellipse(0.55, 0.55), False)],
    "hexagon": lambda: [(_regular(6, 0), True)],
}
assert set(_PARTS) == set(FAMILIES)


def parts(family: str) -> List[Part]:
    """The family's (polygon, paint) parts in unit coordinates."""
    try:
        return _PARTS[family]()
    except KeyError:
        raise ValueError(f"unknown shape family {family!r}") from None


def place(family: str, cx: float, cy: float, r: float, rot_deg: float) -> List[Part]:
    """Parts moved to centre (cx, cy), scaled by r and rotated by rot_deg (any units)."""
    c, s = math.cos(math.radians(rot_deg)), math.sin(math.radians(rot_deg))
    return [([(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in poly], paint)
            for poly, paint in parts(family)]


def draw(d: ImageDraw.ImageDraw, family: str, cx: float, cy: float, r: float, rot_deg: float, fill, bg) -> None:
    """Paint one shape onto an ImageDraw (pixel coordinates)."""
    for poly, paint in place(family, cx, cy, r, rot_deg):
        d.polygon(poly, fill=fill if paint else bg)


def mask(family: str, size: int, cx: float, cy: float, r: float, rot_deg: float, supersample: int = 2):
    """Boolean numpy mask (size x size) of one shape, pixel coordinates."""
    import numpy as np

    S = size * supersample
    img = Image.new("L", (S, S), 0)
    d = ImageDraw.Draw(img)
    for poly, paint in place(family, cx * supersample, cy * supersample, r * supersample, rot_deg):
        d.polygon(poly, fill=255 if paint else 0)
    if supersample > 1:
        img = img.resize((size, size), Image.BOX)
    return np.asarray(img) >= 128


def unit_area(family: str) -> float:
    """Area of the family at r = 1 (measured on a fine raster, cached)."""
    if family not in _AREA:
        m = mask(family, 256, 128.0, 128.0, 100.0, 0.0, supersample=1)
        _AREA[family] = float(m.sum()) / (100.0 * 100.0)
    return _AREA[family]


_AREA: Dict[str, float] = {}


def check_split(train: Sequence[str] = TRAIN_FAMILIES, held: Sequence[str] = HELD_OUT_FAMILIES) -> None:
    """Raise if a held-out family is among the training families (the split rule)."""
    bad = sorted(set(train) & set(held))
    if bad:
        raise ValueError(f"held-out shape families in training: {bad}")


check_split()

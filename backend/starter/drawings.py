"""Rough hand-drawn outlines and silhouettes of the starter's shapes, made procedurally.

The starter's control model is steered by what an artist would scribble: not
the exact shape but a wobbly outline (or a quickly filled silhouette) of it,
drawn anywhere on the canvas at any size the domain allows.  A drawing here
is made from a scene's geometry (:func:`.domain.sample_geometry`):

* the shape's outline (a 64-gon for the circle) is scaled by a few per cent
  and shifted a little (the artist's eye is not exact);
* its radius wobbles by a sum of three low-frequency sines of random phase
  (a hand's tremor), plus a little per-vertex jitter;
* an outline stroke is 1-3 px wide at 64 px and may overshoot its start or
  leave a small gap; a silhouette is the wobbly polygon filled;
* white marks on black, binary, as the ``scribble`` preprocessor turns an
  artist's dark strokes on a light (or any strokes on a transparent) layer.

:func:`drawn_region` is the region the drawing encloses (the evaluation's
reference for IoU).  Everything is deterministic from the generator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
from PIL import Image, ImageDraw

from . import domain as D

_SS = 4   # supersampling of the drawing


@dataclass
class Drawing:
    shape: str
    geometry: Tuple[float, float, float, float]   # the scene's (cx, cy, r, rotation) the drawing was made from
    points: List[Tuple[float, float]]              # the wobbly closed path, unit coordinates
    filled: bool
    width: float                                   # stroke width as a fraction of the side
    gap: Tuple[int, int]                           # [start, end) of path vertices left undrawn (outlines)


def _outline(shape: str, cx: float, cy: float, r: float, rot: float) -> List[Tuple[float, float]]:
    if shape == "circle":
        return [(cx + r * math.cos(2 * math.pi * k / 64), cy + r * math.sin(2 * math.pi * k / 64)) for k in range(64)]
    return D.shape_polygon(shape, cx, cy, r, rot)


def _densify(points: List[Tuple[float, float]], n: int = 96) -> np.ndarray:
    """The closed polygon resampled to ``n`` points evenly spaced along its perimeter."""
    p = np.asarray(points + points[:1], dtype=np.float64)
    seg = np.hypot(*np.diff(p, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, cum[-1], n, endpoint=False)
    return np.stack([np.interp(t, cum, p[:, 0]), np.interp(t, cum, p[:, 1])], axis=1)


def make_drawing(shape: str, geometry, rng: np.random.Generator, filled_fraction: float = 0.35) -> Drawing:
    """A rough drawing of ``shape`` at ``geometry`` (see the module doc for what varies)."""
    cx, cy, r, rot = geometry
    scale = float(rng.uniform(0.92, 1.08))
    dx, dy = (float(v) for v in rng.normal(0.0, 0.015, 2))
    path = _densify(_outline(shape, cx, cy, r * scale, rot))
    centre = np.array([cx + dx, cy + dy])
    rel = path - np.array([cx, cy])
    theta = np.arctan2(rel[:, 1], rel[:, 0])
    wobble = np.zeros_like(theta)
    for freq in (2, 3, 5):
        wobble += float(rng.uniform(0.0, 0.035)) * np.sin(freq * theta + float(rng.uniform(0, 2 * math.pi)))
    wobble += rng.normal(0.0, 0.008, theta.shape)
    pts = centre + rel * (1.0 + wobble)[:, None]
    filled = bool(rng.random() < filled_fraction)
    width = float(rng.uniform(1.0, 3.0)) / 64.0
    n = len(pts)
    gap = (0, 0)
    if not filled and rng.random() < 0.4:
        start = int(rng.integers(n))
        gap = (start, start + int(rng.integers(1, 5)))
    return Drawing(shape, (cx, cy, r, rot), [(float(x), float(y)) for x, y in pts], filled, width, gap)


def render_drawing(d: Drawing, size: int) -> np.ndarray:
    """The drawing as a ``size`` x ``size`` x 3 uint8 map: white marks on black."""
    S = size * _SS
    img = Image.new("L", (S, S), 0)
    draw = ImageDraw.Draw(img)
    pts = [(x * S, y * S) for x, y in d.points]
    if d.filled:
        draw.polygon(pts, fill=255)
    else:
        n = len(pts)
        skip = set(range(d.gap[0], d.gap[1]))
        w = max(1, int(round(d.width * S)))
        for i in range(n):
            if i % n in skip or (i + 1) % n in skip:
                continue
            draw.line([pts[i], pts[(i + 1) % n]], fill=255, width=w)
        for i in range(n):   # round joints, as a pen leaves them
            if i not in skip:
                x, y = pts[i]
                draw.ellipse([x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill=255)
    small = img.resize((size, size), Image.BOX)
    # binary, as the scribble preprocessor makes an artist's layer: what trains is what arrives
    arr = np.where(np.asarray(small) >= 96, 255, 0).astype(np.uint8)
    return np.repeat(arr[..., None], 3, axis=2)


def drawn_region(d: Drawing, size: int) -> np.ndarray:
    """The region the drawing encloses (filled wobbly path) as a boolean ``size`` x ``size`` mask."""
    S = size * _SS
    img = Image.new("L", (S, S), 0)
    ImageDraw.Draw(img).polygon([(x * S, y * S) for x, y in d.points], fill=255)
    return np.asarray(img.resize((size, size), Image.BOX)) >= 128


def sample_geometry(shape: str, rng: np.random.Generator, min_radius: float = D.MIN_RADIUS,
                    max_radius: float = D.MAX_RADIUS) -> Tuple[float, float, float, float]:
    """A scene geometry anywhere on the canvas (the shape inside the domain's margin), radius in range."""
    r = float(rng.uniform(min_radius, max_radius))
    if shape == "square":
        r *= 0.9
    lo, hi = D._MARGIN + r, 1.0 - D._MARGIN - r
    cx, cy = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
    rot = 0.0 if shape == "circle" else float(rng.uniform(-D.MAX_ROTATION_DEG, D.MAX_ROTATION_DEG))
    return cx, cy, r, rot


def sample(n: int, size: int, rng: np.random.Generator, combos=None, **geometry_kw):
    """``n`` training triples: scene pictures (n, size, size, 3), drawings (same shape), captions, drawings."""
    pool = list(D.train_combos() if combos is None else combos)
    scenes, maps, captions, drawings = [], [], [], []
    for _ in range(n):
        shape, fg, bg = pool[int(rng.integers(len(pool)))]
        geom = sample_geometry(shape, rng, **geometry_kw)
        d = make_drawing(shape, geom, rng)
        scenes.append(np.asarray(D.render_geometry(shape, fg, bg, size, geom)))
        maps.append(render_drawing(d, size))
        captions.append(D.caption(shape, fg, bg))
        drawings.append(d)
    return np.stack(scenes), np.stack(maps), captions, drawings

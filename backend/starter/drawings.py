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


# ------------------------------------------------------------------ the scenes domain (128 px starter)
# The richer starter (``scenes.py``) draws 12 families, some concave (chevron, hourglass) or made of
# several parts (teardrop), so a drawing there is not a wobbled vertex list: the family's own mask
# (``families.mask``, the renderer's definition) is warped radially around its centre by the same kind
# of low-frequency tremor, and its boundary is stroked (or the warped mask filled).  That works for
# every family alike and keeps the drawn region exactly the warped silhouette.

_SCENE_SS = 2     # the scene drawings' supersampling (strokes are 1-3 px at 128 px)


@dataclass
class SceneDrawing:
    scene: "object"                        # scenes.Scene of one object: the target picture and its caption
    centre: Tuple[float, float]            # the drawn shape's centre (the scene's object's)
    scale: float                           # the drawn size against the scene's (1: see make_scene_drawing)
    wobble: Tuple[Tuple[int, float, float], ...]   # (frequency, amplitude, phase) of the radial tremor
    filled: bool
    width: float                           # stroke width as a fraction of the side
    gap: Tuple[float, float, float]        # (x, y, radius) of a pen lift along the outline; radius 0: none


def make_scene_drawing(scene, rng: np.random.Generator, filled_fraction: float = 0.35) -> SceneDrawing:
    """A rough drawing of the one object of ``scene`` (see the section comment for what varies).

    Unlike the 64 px drawings, the drawing is not shifted or scaled against the scene: the target
    is the clean shape the rough drawing stands for (its wobble averages out), so training does not
    learn a blur of "somewhere near the drawing" and the IoU with the drawn region measures how well
    the model follows the drawing, not an offset it could never know.
    """
    o = scene.objects[0]
    wob = [(f, float(rng.uniform(0.0, 0.035)), float(rng.uniform(0, 2 * math.pi))) for f in (2, 3, 5)]
    wob += [(int(f), float(rng.uniform(0.0, 0.01)), float(rng.uniform(0, 2 * math.pi)))
            for f in rng.integers(7, 14, 2)]
    filled = bool(rng.random() < filled_fraction)
    width = float(rng.uniform(1.0, 3.0)) / 128.0
    gap = (0.0, 0.0, 0.0)
    if not filled and rng.random() < 0.4:
        a = float(rng.uniform(0, 2 * math.pi))
        gap = (a, 0.0, float(rng.uniform(1.5, 4.0)) / 128.0)   # x holds the angle until resolved on the outline
    return SceneDrawing(scene, (o.cx, o.cy), 1.0, tuple(wob), filled, width, gap)


def _scene_mask(d: SceneDrawing, side: int) -> np.ndarray:
    """The warped silhouette at ``side`` x ``side`` (boolean)."""
    from . import families as FAM

    o = d.scene.objects[0]
    cx, cy = d.centre[0] * side, d.centre[1] * side
    base = FAM.mask(o.family, side, cx, cy, o.r * d.scale * side, o.rot, supersample=2)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64) + 0.5
    rx, ry = xs - cx, ys - cy
    theta = np.arctan2(ry, rx)
    w = np.zeros_like(theta)
    for f, amp, ph in d.wobble:
        w += amp * np.sin(f * theta + ph)
    sx = np.clip(np.round(cx + rx / (1.0 + w) - 0.5), 0, side - 1).astype(np.int64)
    sy = np.clip(np.round(cy + ry / (1.0 + w) - 0.5), 0, side - 1).astype(np.int64)
    return base[sy, sx]


def render_scene_drawing(d: SceneDrawing, size: int) -> np.ndarray:
    """The drawing as a ``size`` x ``size`` x 3 uint8 map: white marks on black (binary)."""
    from PIL import ImageFilter

    S = size * _SCENE_SS
    m = _scene_mask(d, S)
    if d.filled:
        marks = m
    else:
        img = Image.fromarray((m * 255).astype(np.uint8))
        edge = m & ~(np.asarray(img.filter(ImageFilter.MinFilter(3))) > 0)
        k = max(1, int(round(d.width * S)))
        k += 1 - k % 2                                   # MaxFilter sizes are odd
        marks = np.asarray(Image.fromarray((edge * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(k))) > 0
        if d.gap[2] > 0:                                 # a pen lift where the ray at the gap's angle leaves the shape
            ys, xs = np.nonzero(edge)
            cx, cy = d.centre[0] * S, d.centre[1] * S
            ang = np.arctan2(ys + 0.5 - cy, xs + 0.5 - cx)
            i = int(np.argmin(np.abs(np.angle(np.exp(1j * (ang - d.gap[0])))))) if len(xs) else None
            if i is not None:
                yy, xx = np.mgrid[0:S, 0:S]
                marks = marks & ((xx - xs[i]) ** 2 + (yy - ys[i]) ** 2 > (d.gap[2] * S) ** 2)
    small = Image.fromarray((marks * 255).astype(np.uint8)).resize((size, size), Image.BOX)
    arr = np.where(np.asarray(small) >= 96, 255, 0).astype(np.uint8)
    return np.repeat(arr[..., None], 3, axis=2)


def scene_drawn_region(d: SceneDrawing, size: int) -> np.ndarray:
    """The region the drawing encloses (the warped silhouette) as a boolean ``size`` x ``size`` mask."""
    m = _scene_mask(d, size * _SCENE_SS)
    small = Image.fromarray((m * 255).astype(np.uint8)).resize((size, size), Image.BOX)
    return np.asarray(small) >= 128


def sample_scenes(n: int, size: int, rng: np.random.Generator, triples=None, plain_fraction: float = 0.4):
    """``n`` one-object scenes of the 128 px domain and their drawings.

    -> (pictures (n, size, size, 3) uint8, drawing maps (same shape), captions, SceneDrawings).
    A scene's triple comes from ``triples`` (default: the starter's training triples); its caption is
    the starter's own: plain ("a red pentagon on a blue background": any size, anywhere) in
    ``plain_fraction`` of scenes, else with the size and place word that fit where the object is.
    """
    from . import scenes as SC

    pool = list(SC.train_triples() if triples is None else triples)
    pics, maps, caps, drawn = [], [], [], []
    for _ in range(n):
        fam, fg, bg = pool[int(rng.integers(len(pool)))]
        if rng.random() < plain_fraction:
            o = SC.make_object(fam, fg, None, None, rng)
        else:
            o = SC.make_object(fam, fg, "small" if rng.random() < 0.5 else "big",
                               SC.PLACES[int(rng.integers(len(SC.PLACES)))], rng)
        scene = SC.Scene(bg, [o])
        d = make_scene_drawing(scene, rng)
        pics.append(np.asarray(SC.render(scene, size)))
        maps.append(render_scene_drawing(d, size))
        caps.append(SC.caption(scene))
        drawn.append(d)
    return np.stack(pics), np.stack(maps), caps, drawn

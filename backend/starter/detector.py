"""Procedural judge of starter-domain images (numpy only).

* background colour: the most common palette colour on the image border;
* foreground colour: the most common palette colour among the other pixels;
* shape: the strict per-family detectors of :mod:`.judges` on the largest
  foreground object (template fit of the family's own outline; "none" when no
  family's detector says yes).  This replaced a solidity rule ("solidity < 0.8
  is a star") that called any concave blob a star (issue 20).

``solidity`` and ``roundness`` are still computed: they are two of the FD-13
features of :mod:`.evaluate`, not judgments.  Images of any size are resized to
``WORK_SIZE`` for the colours and features; the shape judge works on the
original pixels.
"""

from __future__ import annotations

import math
from typing import Dict, Union

import numpy as np
from PIL import Image

from .domain import COLOR_NAMES, COLORS, parse_caption

WORK_SIZE = 96
_PALETTE = np.array([COLORS[c] for c in COLOR_NAMES], dtype=np.float32)



def _to_array(img: Union[Image.Image, np.ndarray]) -> np.ndarray:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img.astype(np.uint8))
    img = img.convert("RGB")
    if img.size != (WORK_SIZE, WORK_SIZE):
        img = img.resize((WORK_SIZE, WORK_SIZE), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _nearest(px: np.ndarray) -> np.ndarray:
    d = ((px[..., None, :] - _PALETTE) ** 2).sum(-1)
    return d.argmin(-1)


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of 2-D points (Andrew's monotone chain)."""
    pts = sorted(set(map(tuple, points.tolist())))
    if len(pts) < 3:
        return 0.0

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = lower[:-1] + upper[:-1]
    a = 0.0
    for i in range(len(hull)):
        x1, y1 = hull[i]
        x2, y2 = hull[(i + 1) % len(hull)]
        a += x1 * y2 - x2 * y1
    return abs(a) / 2.0


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 4-connected component (iterative flood fill)."""
    h, w = mask.shape
    labels = np.zeros(mask.shape, dtype=np.int32)
    best, best_n, cur = 0, 0, 0
    ys, xs = np.nonzero(mask)
    for y0, x0 in zip(ys.tolist(), xs.tolist()):
        if labels[y0, x0]:
            continue
        cur += 1
        stack = [(y0, x0)]
        labels[y0, x0] = cur
        n = 0
        while stack:
            y, x = stack.pop()
            n += 1
            for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not labels[yy, xx]:
                    labels[yy, xx] = cur
                    stack.append((yy, xx))
        if n > best_n:
            best, best_n = cur, n
    return labels == best if best else mask


def shape_features(mask: np.ndarray) -> Dict[str, float]:
    """Descriptors of a boolean foreground mask."""
    area = float(mask.sum())
    if area < 4:
        return {"area": area, "solidity": 0.0, "roundness": 0.0}
    ys, xs = np.nonzero(mask)
    # hull over pixel corners of the row extremes
    pts = []
    for y in np.unique(ys):
        row = xs[ys == y]
        for x in (row.min(), row.max() + 1):
            pts.append((x, y))
            pts.append((x, y + 1))
    hull = _hull_area(np.array(pts, dtype=np.float64))
    solidity = area / hull if hull > 0 else 0.0
    cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
    # farthest pixel corner from the centroid
    d2 = (xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2
    r = math.sqrt(float(np.percentile(d2, 99.5))) + 0.5
    roundness = area / (math.pi * r * r)
    return {"area": area, "solidity": float(solidity), "roundness": float(roundness)}


def analyse(img) -> Dict[str, object]:
    """Detection plus the raw features (used by the evaluation statistics)."""
    from . import judges

    shape = "none"
    src = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img).astype(np.uint8))
    bg_name, objs = judges.find_objects(src)
    a = _to_array(img)
    lab = _nearest(a)
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    bg_i = int(np.bincount(border, minlength=len(COLOR_NAMES)).argmax())
    counts = np.bincount(lab.ravel(), minlength=len(COLOR_NAMES)).astype(np.int64)
    counts[bg_i] = -1
    fg_i = int(counts.argmax())
    fgc, bgc = _PALETTE[fg_i], _PALETTE[bg_i]
    mask = ((a - fgc) ** 2).sum(-1) < ((a - bgc) ** 2).sum(-1)
    if mask.any():
        mask = _largest_component(mask)
    feats = shape_features(mask)
    fg_frac = float(mask.mean())
    mine = [o for o in objs if o.fg == COLOR_NAMES[fg_i]] if bg_name == COLOR_NAMES[bg_i] else []
    if mine:
        shape = judges.classify(mine[0].canon)
    return {
        "shape": shape,
        "fg": COLOR_NAMES[fg_i],
        "bg": COLOR_NAMES[bg_i],
        "solidity": feats["solidity"],
        "roundness": feats["roundness"],
        "fg_fraction": fg_frac,
        "mask": mask,
    }


def detect(img) -> Dict[str, str]:
    """-> dict(shape=..., fg=..., bg=...)."""
    r = analyse(img)
    return {"shape": r["shape"], "fg": r["fg"], "bg": r["bg"]}


def judge(img, caption_text: str) -> Dict[str, bool]:
    """Compare an image with its caption -> dict(shape, fg, bg, all) of bools.

    A caption with the class noun "shape" accepts any shape a strict detector recognises.
    """
    shape, fg, bg = parse_caption(caption_text)
    d = detect(img)
    ok_shape = d["shape"] != "none" if shape == "shape" else d["shape"] == shape
    res = {"shape": ok_shape, "fg": d["fg"] == fg, "bg": d["bg"] == bg}
    res["all"] = all(res.values())
    return res

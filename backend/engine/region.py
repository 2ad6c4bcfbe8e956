"""Which part of the canvas an edit diffuses, and at what size ("only masked").

A 300x200 mask on a 4000x3000 canvas should cost a 512x512-class job, not a
12-megapixel one, and should get the model's full resolution for the detail
it paints.  So by default an edit diffuses only a *region*:

1. the feathered mask's bounding box plus ``padding`` px of context,
2. widened (never narrowed) so its aspect ratio stays within
   :data:`MAX_ASPECT` - SD1.5-class models compose badly on 4:1 strips,
3. scaled to the model's native area (``native_size``²: a small region is
   upscaled for detail, a large one downscaled to what the model handles),
   long side capped by the model's ``max_size`` when it has one, both sides
   rounded to the VAE's multiple of 8,
4. widened once more to the exact aspect of that rounded size, so the crop is
   never distorted (only where the canvas edge stops it is the scaling very
   slightly anisotropic).

``whole_picture`` diffuses the whole canvas instead, at its own size rounded
to 8 and capped by ``max_size`` (:func:`picture_size`; pictures smaller than
the native area are scaled up to it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

from .masks import Box

MAX_ASPECT = 2.0


@dataclass(frozen=True)
class Region:
    box: Box                  # canvas pixels diffused: x0, y0, x1, y1 (exclusive)
    size: Tuple[int, int]     # diffusion width, height (multiples of the VAE factor)

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


def _widen(lo: int, hi: int, want: int, limit: int) -> Tuple[int, int]:
    """Grow the span [lo, hi) to ``want`` px around its centre, shifted to stay in [0, limit)."""
    want = min(max(want, hi - lo), limit)
    extra = want - (hi - lo)
    lo -= extra // 2
    hi += extra - extra // 2
    if lo < 0:
        hi, lo = hi - lo, 0
    if hi > limit:
        lo, hi = lo - (hi - limit), limit
    return max(lo, 0), min(hi, limit)


def _round_to(value: float, mult: int) -> int:
    return max(mult, int(round(value / mult)) * mult)


def only_masked(mask_box: Box, canvas: Tuple[int, int], padding: int, native: int, max_size: int = 0,
                mult: int = 8) -> Region:
    """The region to diffuse for a mask whose (feathered) bounding box is ``mask_box``."""
    cw, ch = canvas
    x0, y0, x1, y1 = mask_box
    x0, y0, x1, y1 = max(0, x0 - padding), max(0, y0 - padding), min(cw, x1 + padding), min(ch, y1 + padding)
    w, h = x1 - x0, y1 - y0
    # 2. keep the aspect within what the model composes well
    if w > MAX_ASPECT * h:
        y0, y1 = _widen(y0, y1, math.ceil(w / MAX_ASPECT), ch)
    elif h > MAX_ASPECT * w:
        x0, x1 = _widen(x0, x1, math.ceil(h / MAX_ASPECT), cw)
    w, h = x1 - x0, y1 - y0
    # 3. the model's native area, capped, rounded
    scale = native / math.sqrt(w * h)
    dw, dh = w * scale, h * scale
    if max_size and max(dw, dh) > max_size:
        shrink = max_size / max(dw, dh)
        dw, dh = dw * shrink, dh * shrink
    dw, dh = _round_to(dw, mult), _round_to(dh, mult)
    if max_size:
        while dw > max_size and dw > mult:
            dw -= mult
        while dh > max_size and dh > mult:
            dh -= mult
    # 4. the crop takes the exact aspect of the diffusion size (widening only)
    aspect = dw / dh
    if w / h < aspect:
        x0, x1 = _widen(x0, x1, round(h * aspect), cw)
    elif w / h > aspect:
        y0, y1 = _widen(y0, y1, round(w / aspect), ch)
    return Region(box=(x0, y0, x1, y1), size=(dw, dh))


def picture_size(width: int, height: int, loaded) -> Tuple[int, int]:
    """The diffusion size for a whole picture (img2img, ``whole_picture`` edits).

    Its own size rounded to 8 and capped by ``max_size`` when set
    (:func:`.txt2img.diffusion_size`); a picture smaller than the model's
    native area is scaled *up* to that area first - a 100x80 sprite diffused
    at 104x80 by a 512-px model comes out as mush, and a VAE cannot encode
    much below 8x8 latents' worth of pixels at all.
    """
    from .txt2img import diffusion_size

    native = loaded.entry.native_size
    if native and width * height < native * native:
        scale = native / math.sqrt(width * height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    return diffusion_size(width, height, loaded)


def whole_picture(canvas: Tuple[int, int], loaded) -> Region:
    w, h = canvas
    return Region(box=(0, 0, w, h), size=picture_size(w, h, loaded))

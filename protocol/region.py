"""The one "only masked" region rule, shared by every client and the engine.

Why here: a 300x200 selection on a 4000x3000 canvas should cost a
512x512-class job, so an edit diffuses only a *region* around the mask.  The
engine decides that region (it knows the model's native size); a client must
send a window of the canvas that holds every pixel the region can use, and a
preview must be drawn where the region lies.  When each side wrote its own
rule they disagreed; this module is the rule, and nobody else has one.

The rule, for a mask whose (grown, feathered) bounding box is ``mask_box``:

1. the box plus ``padding`` px of context, clipped to the canvas;
2. widened (never narrowed) so no side is shorter than 1/:data:`MAX_ASPECT`
   of the other - SD-class models compose badly on 4:1 strips
   (:func:`context_box`);
3. the diffusion size: the model's native area (``native``²; a small region
   is scaled up for detail, a large one down), long side capped by
   ``max_size`` when the model has one, both sides rounded to the VAE's
   multiple of 8 (:func:`diffusion_size`);
4. widened once more to the exact aspect of that size, so the crop is never
   distorted (:func:`fit_aspect`).

:func:`only_masked` is steps 1-4 (the engine's call).  :func:`send_window`
is what a client sends: steps 1-2 applied to an upper bound of the feathered
box (the selection grown by ``grow`` + ``mask_blur``: Impasto's feather is
three box blurs whose radii add up to ``mask_blur``), plus :data:`SLACK` of
each side for step 4, which the client cannot know without the model.  The
tests check, over thousands of random cases and native sizes 64..1024, that
the region the engine picks inside the window is exactly the region it
would pick on the whole canvas - so sending a window never changes a result.

Boxes are corner tuples ``(x0, y0, x1, y1)`` (x1, y1 exclusive), in canvas
pixels.  Standard library only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

Box = Tuple[int, int, int, int]

MAX_ASPECT = 2.0
#: fraction of the context box's span added on each side for step 4 (aspect snap), plus SLACK_PX: enough
#: whenever the diffusion size's short side is >= 24 px (rounding to 8 changes its aspect by < 50 %)
SLACK = 0.25
SLACK_PX = 8


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


def widen(lo: int, hi: int, want: int, start: int, limit: int) -> Tuple[int, int]:
    """Grow the span [lo, hi) to ``want`` px around its centre, shifted to stay in [start, limit)."""
    want = min(max(want, hi - lo), limit - start)
    extra = want - (hi - lo)
    lo -= extra // 2
    hi += extra - extra // 2
    if lo < start:
        hi, lo = hi + (start - lo), start
    if hi > limit:
        lo, hi = lo - (hi - limit), limit
    return max(lo, start), min(hi, limit)


def expand(box: Box, margin: int, canvas: Tuple[int, int]) -> Box:
    """``box`` grown by ``margin`` px on every side, clipped to the canvas."""
    x0, y0, x1, y1 = box
    return max(0, x0 - margin), max(0, y0 - margin), min(canvas[0], x1 + margin), min(canvas[1], y1 + margin)


def context_box(mask_box: Box, canvas: Tuple[int, int], padding: int) -> Box:
    """Steps 1-2: the mask's box plus ``padding``, widened to at most :data:`MAX_ASPECT`."""
    cw, ch = canvas
    x0, y0, x1, y1 = expand(mask_box, max(0, int(padding)), canvas)
    w, h = x1 - x0, y1 - y0
    if w > MAX_ASPECT * h:
        y0, y1 = widen(y0, y1, math.ceil(w / MAX_ASPECT), 0, ch)
    elif h > MAX_ASPECT * w:
        x0, x1 = widen(x0, x1, math.ceil(h / MAX_ASPECT), 0, cw)
    return x0, y0, x1, y1


def _round_to(value: float, mult: int) -> int:
    return max(mult, int(round(value / mult)) * mult)


def diffusion_size(width: int, height: int, native: int, max_size: int = 0, mult: int = 8) -> Tuple[int, int]:
    """Step 3: ``width`` x ``height`` scaled to the native area, capped by ``max_size``, rounded to ``mult``."""
    scale = native / math.sqrt(width * height)
    dw, dh = width * scale, height * scale
    if max_size and max(dw, dh) > max_size:
        shrink = max_size / max(dw, dh)
        dw, dh = dw * shrink, dh * shrink
    dw, dh = _round_to(dw, mult), _round_to(dh, mult)
    if max_size:
        while dw > max_size and dw > mult:
            dw -= mult
        while dh > max_size and dh > mult:
            dh -= mult
    return dw, dh


def fit_aspect(box: Box, width: int, height: int, bounds: Box) -> Box:
    """Step 4: ``box`` widened (never narrowed) around its centre to ``width``:``height``, inside ``bounds``.

    Also where a client draws a live preview: the preview has the diffusion
    size, so fitting the context box to its aspect finds the region.
    """
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0 or width <= 0 or height <= 0:
        return box
    aspect = width / height
    if w / h < aspect:
        x0, x1 = widen(x0, x1, round(h * aspect), bounds[0], bounds[2])
    elif w / h > aspect:
        y0, y1 = widen(y0, y1, round(w / aspect), bounds[1], bounds[3])
    return x0, y0, x1, y1


def only_masked(mask_box: Box, canvas: Tuple[int, int], padding: int, native: int, max_size: int = 0,
                mult: int = 8) -> Region:
    """Steps 1-4: the region to diffuse for a mask whose feathered bounding box is ``mask_box``."""
    box = context_box(mask_box, canvas, padding)
    w, h = box[2] - box[0], box[3] - box[1]
    dw, dh = diffusion_size(w, h, native, max_size, mult)
    return Region(box=fit_aspect(box, dw, dh, (0, 0, canvas[0], canvas[1])), size=(dw, dh))


def feather_reach(grow: int, mask_blur: int) -> int:
    """How far past the selection's box the grown, feathered mask can reach, px."""
    return max(int(grow), 0) + max(int(mask_blur), 0)


def send_window(selection_box: Box, canvas: Tuple[int, int], padding: int, grow: int, mask_blur: int) -> Box:
    """The canvas window a client sends for an "only masked" edit of a selection inside ``selection_box``.

    It holds every pixel :func:`only_masked` can choose on the whole canvas,
    whatever the model (see the module doc), so the daemon's answer is the
    same as if the whole canvas had been sent.
    """
    reach = expand(selection_box, feather_reach(grow, mask_blur), canvas)
    x0, y0, x1, y1 = context_box(reach, canvas, padding)
    # step 4 widens one side around its centre, shifted off the canvas edge: the slack goes on both
    # sides, and where the edge cuts one side the other takes it (the same shift as the engine's)
    x0, x1 = widen(x0, x1, (x1 - x0) + 2 * (int(math.ceil((x1 - x0) * SLACK)) + SLACK_PX), 0, canvas[0])
    y0, y1 = widen(y0, y1, (y1 - y0) + 2 * (int(math.ceil((y1 - y0) * SLACK)) + SLACK_PX), 0, canvas[1])
    return x0, y0, x1, y1


# --------------------------------------------------------------------------- gray8 masks as bytes


def mask_box(mask: bytes, width: int, height: int) -> Optional[Box]:
    """The tight box around a gray8 mask's non-zero pixels, or None when it is empty.

    Whole rows at a time with ``bytes`` methods: a 4K mask costs milliseconds.
    """
    if len(mask) != width * height:
        raise ValueError(f"mask has {len(mask)} bytes, {width}x{height} needs {width * height}")
    if not mask.strip(b"\x00"):
        return None
    top = bottom = -1
    left, right = width, -1
    for y in range(height):
        row = mask[y * width:(y + 1) * width]
        stripped = row.lstrip(b"\x00")
        if not stripped:
            continue
        if top < 0:
            top = y
        bottom = y
        left = min(left, width - len(stripped))
        right = max(right, len(row.rstrip(b"\x00")) - 1)
    return left, top, right + 1, bottom + 1


def crop_bytes(data: bytes, width: int, box: Box, channels: int = 1) -> bytes:
    """The rows of ``box`` cut out of a ``width``-px wide plane of ``channels`` bytes a pixel."""
    x0, y0, x1, y1 = box
    stride, a, b = width * channels, x0 * channels, x1 * channels
    if (x0, x1) == (0, width):
        return bytes(data[y0 * stride:y1 * stride])
    return b"".join(data[y * stride + a:y * stride + b] for y in range(y0, y1))


def paste_bytes(data: bytearray, width: int, box: Box, part: bytes, channels: int = 4) -> None:
    """Write ``part`` (the rows of ``box``) back into a ``width``-px wide plane, in place."""
    x0, y0, x1, y1 = box
    stride, row = width * channels, (x1 - x0) * channels
    for i, y in enumerate(range(y0, y1)):
        start = y * stride + x0 * channels
        data[start:start + row] = part[i * row:(i + 1) * row]

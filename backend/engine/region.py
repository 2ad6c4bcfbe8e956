"""Which part of the canvas an edit diffuses, and at what size ("only masked").

The rule itself lives in :mod:`impasto.protocol.region` - the clients pick
the window they send with the same code, so there is one rule, not one per
front end (see that module for the four steps and why).  This module adds
only what needs the loaded model: the whole-picture size (:func:`picture_size`)
and the ``whole_picture`` region.

``whole_picture`` diffuses the whole canvas instead, at its own size rounded
to 8 and capped by ``max_size`` (pictures smaller than the native area are
scaled up to it).
"""
from __future__ import annotations

import math
from typing import Tuple

from impasto.protocol.region import MAX_ASPECT, Region, only_masked  # noqa: F401  (the one rule)


def picture_size(width: int, height: int, loaded) -> Tuple[int, int]:
    """The diffusion size for a whole picture (img2img, ``whole_picture`` edits).

    Its own size rounded to 8 and capped by ``max_size`` when set
    (:func:`.common.diffusion_size`); a picture smaller than the model's
    native area is scaled *up* to that area first - a 100x80 sprite diffused
    at 104x80 by a 512-px model comes out as mush, and a VAE cannot encode
    much below 8x8 latents' worth of pixels at all.
    """
    from .common import diffusion_size

    native = loaded.entry.native_size
    if native and width * height < native * native:
        scale = native / math.sqrt(width * height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    return diffusion_size(width, height, loaded)


def whole_picture(canvas: Tuple[int, int], loaded) -> Region:
    w, h = canvas
    return Region(box=(0, 0, w, h), size=picture_size(w, h, loaded))

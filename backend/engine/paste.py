"""Paste-back: the edited pixels go into the original through the feathered mask.

The VAE round trip alone changes pixels everywhere (4-60 levels far from the
mask on SD1.5), so the decoded picture is never returned as is.  Instead
the new pixels form a *patch* - RGB from diffusion, alpha = the feathered
mask - composited over the original with the standard "over" operator, the
one Krita and GIMP use for a normal layer.  Hence:

* every pixel where the feathered mask is 0 is copied from the input, bit for
  bit (alpha included);
* where it is 255 the pixel is the new one, opaque;
* in between, a straight-alpha "over" mix - so a plugin that inserts the
  patch as a layer above the original shows exactly the full result (to
  within its own 8-bit rounding).
"""
from __future__ import annotations

import numpy as np


def make_patch(new_rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGBA uint8 patch: the new pixels with the feathered mask as alpha."""
    return np.dstack([new_rgb.astype(np.uint8), alpha.astype(np.uint8)])


def over(patch: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA ``patch`` over RGBA ``base`` (same shape), rounded once.

    Pixels with patch alpha 0 are ``base`` exactly; with patch alpha 255 they
    are ``patch`` exactly.  Only the soft pixels in between are computed (in
    float64), so a canvas-sized patch that is mostly 0 or 255 costs a few
    boolean passes.
    """
    out = base.copy()
    pa = patch[..., 3]
    opaque = pa == 255
    out[opaque] = patch[opaque]
    soft = (pa > 0) & ~opaque
    if soft.any():
        p = patch[soft].astype(np.float64)
        b = base[soft].astype(np.float64)
        a = p[:, 3:4] / 255.0
        ba = b[:, 3:4] / 255.0
        out_a = a + ba * (1.0 - a)
        rgb = (p[:, :3] * a + b[:, :3] * (ba * (1.0 - a))) / out_a  # out_a >= a > 0
        mixed = np.empty((p.shape[0], 4), np.uint8)
        mixed[:, :3] = np.clip(np.rint(rgb), 0, 255)
        mixed[:, 3] = np.clip(np.rint(out_a[:, 0] * 255.0), 0, 255)
        out[soft] = mixed
    return out


def paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> np.ndarray:
    """A copy of RGBA ``canvas`` with ``patch`` composited at (x, y)."""
    out = canvas.copy()
    h, w = patch.shape[:2]
    out[y:y + h, x:x + w] = over(patch, canvas[y:y + h, x:x + w])
    return out

"""Fill modes: what the masked area holds when it is encoded, before diffusion.

Below denoising strength 1.0 diffusion starts from the encoded picture plus
noise, so what sits under the mask steers the result:

* ``original`` - the pixels as they are: keep the composition, change the
  details (the usual choice for "make this a bit different").
* ``blur`` - the surroundings' colours pulled into the hole and heavily
  blurred (a push-pull pyramid fill, then a wide blur): the old content is
  gone, the new content starts from the colours around it - removing an object.
* ``neutral`` - flat mid-grey (exactly 0 in the VAE's [-1, 1] input space):
  no colour bias at all, the prompt alone decides.
* ``noise`` - uniform random colour per pixel, seeded by the image's seed:
  maximum variation, for "give me something else entirely".

Fills are applied at diffusion size (small), weighted by the grown mask so a
soft mask gets a partial fill.  At strength 1.0 diffusion starts from pure
noise and the fill no longer matters (docs/editing.md).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from impasto.protocol.messages import FILL_MODES

NEUTRAL = 127.5


def _box3(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Three box blurs (about a Gaussian), normalised at the borders."""
    for _ in range(3):
        x = F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    return x


def blur_fill(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Fill ``hole`` (bool HxW) of ``rgb`` (float HxWx3) from its surroundings.

    Push-pull: average the known pixels down a pyramid until every cell has
    some known colour, then walk back up replacing unknown pixels with the
    coarser level's bilinear upsampling; finally blur wide so no trace of
    edges or texture survives in the hole.  With no known pixel at all (a
    fully masked picture) the fill is neutral grey.
    """
    known = ~hole
    if not known.any():
        return np.full_like(rgb, NEUTRAL)
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
        k = torch.from_numpy(known.astype(np.float32))[None, None]
        sums, weights = [x * k], [k]
        while (weights[-1] <= 0).any() and min(weights[-1].shape[-2:]) > 1:
            sums.append(F.avg_pool2d(sums[-1], 2, ceil_mode=True))
            weights.append(F.avg_pool2d(weights[-1], 2, ceil_mode=True))
        color = sums[-1] / weights[-1].clamp_min(1e-8)
        for s, w in zip(reversed(sums[:-1]), reversed(weights[:-1])):
            up = F.interpolate(color, size=s.shape[-2:], mode="bilinear", align_corners=False)
            a = w.clamp(0, 1)
            color = a * (s / w.clamp_min(1e-8)) + (1 - a) * up
        radius = max(2, min(rgb.shape[:2]) // 16)
        color = _box3(color, radius)
        return color[0].permute(1, 2, 0).numpy()


def apply_fill(rgb: np.ndarray, weight: np.ndarray, mode: str, seed: int) -> np.ndarray:
    """``rgb`` (float32 HxWx3, 0..255) with the masked area filled per ``mode``.

    ``weight`` (float HxW, 0..1) is the grown mask: 1 replaces a pixel by the
    fill, 0.5 mixes half and half, 0 keeps it.
    """
    if mode not in FILL_MODES:  # validate_job already refused it; a direct caller gets the same words
        raise ValueError(f"fill: {mode!r} is not one of {', '.join(FILL_MODES)}")
    if mode == "original":
        return rgb
    if mode == "blur":
        fill = blur_fill(rgb, weight > 0)
    elif mode == "neutral":
        fill = np.full_like(rgb, NEUTRAL)
    else:
        fill = np.random.default_rng(int(seed)).uniform(0.0, 255.0, size=rgb.shape).astype(np.float32)
    w = weight[..., None].astype(np.float32)
    return (rgb * (1.0 - w) + fill * w).astype(np.float32)

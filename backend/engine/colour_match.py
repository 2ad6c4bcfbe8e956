"""Colour match: make an inpainted region meet its surroundings without a colour step at the seam.

Diffusion repaints the masked area with colours of its own: on a tinted or
graded picture the new pixels are often a few levels warmer, darker or
flatter than the pixels around them, and the feather band then shows a soft
but visible ring.  Before paste-back (:mod:`.paste`) this module shifts the
generated colours towards the surroundings:

1. the **surround**: opaque original pixels up to ``ring`` px *outside* the
   feathered mask (:func:`reference_ring`), and the **generated seam**: the
   decoded pixels of the feather band and ``ring`` px further in
   (:func:`inner_band`);
2. at every point near the seam, the local mean colour of the surround minus
   the local mean colour of the generated seam (box windows wide enough to
   reach across the feather band), clipped per channel to median +- 3
   robust sigmas, so a stroke of new content crossing the seam is dimmed,
   not painted over;
3. a **low-frequency correction field**: those local differences
   spread into the rest of the mask by a push-pull pyramid and blurred -
   a smooth membrane that equals the local colour error at the seam.  So a
   gradient surround gets a gradient correction, a tint gets a flat one;
   texture and shapes are untouched (only an additive offset, never a gain
   that would amplify noise);
4. the field **fades into the mask**: full strength through the feather
   band, down to zero about a window further in (:func:`fade`), so the seam
   meets the surroundings while new content deep inside keeps its colours -
   without the fade, repainting a red ball's middle blue would tint the new
   blue towards the red around it;
5. the field is added to the generated pixels *inside the feathered mask
   only*.  The patch's alpha is still the feathered mask, so every pixel
   outside mask + feather band stays bit-identical to the input, with or
   without the match.

Off (``Generate.colour_match=False``) the edit path never calls this module,
so the output is exactly the unmatched one.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .masks import _disc_dilate

RING_PX = 8          # width of the reference ring outside the feathered mask, canvas px
MIN_RING_PX = 16     # fewer known pixels than this: no reliable statistics, no correction


def reference_ring(feathered: np.ndarray, alpha: np.ndarray, ring: int = RING_PX) -> np.ndarray:
    """Bool HxW: opaque pixels within ``ring`` px outside the feathered mask (where it is 0)."""
    inside = feathered > 0
    near = _disc_dilate(inside.astype(np.uint8) * 255, ring) > 0
    return near & ~inside & (alpha == 255)


def inner_band(feathered: np.ndarray, ring: int = RING_PX) -> np.ndarray:
    """Bool HxW: the generated pixels along the seam - the feather band plus ``ring`` px further in."""
    inside = feathered > 0
    full = feathered == 255
    reach = _disc_dilate((~full).astype(np.uint8) * 255, ring) > 0 if full.any() else np.ones_like(inside)
    return inside & reach


def _box1(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Box mean of width 2r+1 along ``dim``, normalised at the borders (running sums: O(1) per pixel)."""
    n = x.shape[dim]
    c = torch.cumsum(x.double(), dim=dim)
    first = torch.zeros_like(c.narrow(dim, 0, 1))
    last = c.narrow(dim, n - 1, 1)
    # c_ext[j] = sum of x[:j - r], clamped to 0..n: the window sum is c_ext[i + 2r + 1] - c_ext[i]
    c = torch.cat([first.expand_as(c.narrow(dim, 0, 1)).repeat_interleave(radius + 1, dim=dim), c,
                   last.repeat_interleave(radius, dim=dim)], dim=dim)
    total = c.narrow(dim, 2 * radius + 1, n) - c.narrow(dim, 0, n)
    idx = torch.arange(n, dtype=torch.float64)
    count = (idx + radius + 1).clamp(max=n) - (idx - radius).clamp(min=0)
    shape = [1] * x.dim()
    shape[dim] = n
    return (total / count.view(shape)).to(x.dtype)


def _box3(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Three box blurs (about a Gaussian), normalised at the borders, separable."""
    for _ in range(3):
        x = _box1(_box1(x, radius, 3), radius, 2)
    return x


def _push_pull(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``values`` (1xCxHxW) where ``known`` (1x1xHxW, 0..1 weights) is > 0, smoothly filled elsewhere."""
    sums, weights = [values * known], [known]
    while (weights[-1] <= 0).any() and min(weights[-1].shape[-2:]) > 1:
        sums.append(F.avg_pool2d(sums[-1], 2, ceil_mode=True))
        weights.append(F.avg_pool2d(weights[-1], 2, ceil_mode=True))
    out = sums[-1] / weights[-1].clamp_min(1e-8)
    for s, w in zip(reversed(sums[:-1]), reversed(weights[:-1])):
        up = F.interpolate(out, size=s.shape[-2:], mode="bilinear", align_corners=False)
        a = (w > 0).to(s.dtype)
        out = a * (s / w.clamp_min(1e-8)) + (1 - a) * up
    return out


def correction_field(generated: np.ndarray, original: np.ndarray, outer: np.ndarray, inner: np.ndarray,
                     smooth: int) -> np.ndarray:
    """Float32 HxWx3 additive correction: local surround colour minus local generated colour, spread inwards."""
    with torch.no_grad():
        o = torch.from_numpy(np.ascontiguousarray(original[..., :3], dtype=np.float32)).permute(2, 0, 1)[None]
        g = torch.from_numpy(np.ascontiguousarray(generated[..., :3], dtype=np.float32)).permute(2, 0, 1)[None]
        ko = torch.from_numpy(outer.astype(np.float32))[None, None]
        ki = torch.from_numpy(inner.astype(np.float32))[None, None]
        r = smooth // 3 + 1
        wo, wi = _box3(ko, r), _box3(ki, r)
        local = _box3(o * ko, r) / wo.clamp_min(1e-8) - _box3(g * ki, r) / wi.clamp_min(1e-8)
        known = ((wo > 0.02) & (wi > 0.02)).to(o.dtype)   # where both sides of the seam are in reach
        # robust: a stroke of new content (or an odd patch of surround) moves the field only so far
        samples = local.permute(0, 2, 3, 1)[known[:, 0] > 0]
        med = samples.median(dim=0).values
        spread = 1.4826 * (samples - med).abs().median(dim=0).values
        lim = 3 * spread.clamp_min(2.0)
        local = torch.maximum(torch.minimum(local, (med + lim)[None, :, None, None]), (med - lim)[None, :, None, None])
        field = _push_pull(local, known)               # the rest of the mask: spread smoothly inwards
        field = _box3(field, max(1, r // 2))
    return field[0].permute(1, 2, 0).numpy()


def match(generated: np.ndarray, original: np.ndarray, feathered: np.ndarray,
          ring_px: int = RING_PX) -> Tuple[np.ndarray, Dict[str, object]]:
    """``generated`` (HxWx3 uint8) shifted towards ``original``'s colours (HxWx4 uint8) at the seam.

    All three arrays cover the same canvas box; ``feathered`` is the feathered
    mask there.  Only pixels where it is > 0 change.  Returns the corrected
    pixels and what was done (for ``Result.info["colour_match"]``).
    """
    ring = reference_ring(feathered, original[..., 3], ring_px)
    n = int(ring.sum())
    if n < MIN_RING_PX:
        return generated, {"applied": False, "ring_px": n,
                           "reason": "too few opaque pixels around the mask to compare colours"}
    inner = inner_band(feathered, ring_px)
    smooth = ring_px + int(round(_band_width(feathered))) + 2   # windows reach across the feather band
    before = np.abs(original[..., :3][ring].astype(np.float32).mean(axis=0)
                    - generated[inner].astype(np.float32).mean(axis=0)).mean()
    field = correction_field(generated, original, ring, inner, smooth)
    field *= fade(feathered, smooth)[..., None]
    inside = feathered > 0
    seam = inside & (feathered < 255)                 # the feather band, where the correction is at full strength
    if not seam.any():
        seam = inner
    out = generated.copy()
    shifted = np.rint(generated[inside].astype(np.float32) + field[inside])
    out[inside] = np.clip(shifted, 0, 255).astype(np.uint8)
    return out, {"applied": True, "ring_px": n,
                 "seam_shift": [round(float(v), 2) for v in field[seam].mean(axis=0)],
                 "max_shift": round(float(np.abs(field[inside]).max()), 2),
                 "fade_px": 3 * max(2, smooth // 3),
                 "seam_step_before": round(float(before), 2)}


def fade(feathered: np.ndarray, smooth: int) -> np.ndarray:
    """Float HxW weight of the correction: 1 through the feather band, fading to 0 about ``smooth`` px further in.

    The correction is for the seam: deep inside a mask the new content keeps
    its own colours (an artist who repaints a red ball blue meant it).
    """
    outside_full = torch.from_numpy((feathered < 255).astype(np.float32))[None, None]
    with torch.no_grad():
        near = _box3(outside_full, max(2, smooth // 3))[0, 0].numpy()
    return np.clip(2.0 * near, 0.0, 1.0)


def seam_difference(rgb: np.ndarray, feathered: np.ndarray, width: int = 4) -> float:
    """Colour step across an edit's seam, mean absolute levels (0..255): inner ring vs outer ring, locally.

    The inner ring is ``width`` px of fully-masked pixels along the feather
    band, the outer ring ``width`` px of untouched pixels just outside it.
    At every pixel near the seam the two rings' local mean colours (box
    windows reaching across the band) are compared, so a smooth gradient
    that runs across the seam costs only its slope over the band, while a
    tint or a colour step shows in full.  Used by the tests and by
    ``bench/seam_match.py``; the same measure on the unedited picture is
    the floor a perfect edit would reach.
    """
    full = feathered == 255
    if not full.any():
        full = feathered >= 128
    touched = feathered > 0
    inner = full & (_disc_dilate((~full).astype(np.uint8) * 255, width) > 0)
    outer = ~touched & (_disc_dilate(touched.astype(np.uint8) * 255, width) > 0)
    if not inner.any() or not outer.any():
        raise ValueError("the mask has no inner or no outer ring to compare")
    reach = width + int(round(_band_width(feathered))) + 2   # the box windows reach across the band
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(rgb[..., :3], dtype=np.float32)).permute(2, 0, 1)[None]
        means = []
        for ring in (inner, outer):
            k = torch.from_numpy(ring.astype(np.float32))[None, None]
            means.append((_box3(x * k, reach // 3 + 1), _box3(k, reach // 3 + 1)))
        (si, ki), (so, ko) = means
        seam = (ki > 0.01) & (ko > 0.01)
        step = (si / ki.clamp_min(1e-8) - so / ko.clamp_min(1e-8)).abs().mean(dim=1, keepdim=True)
        return float(step[seam].mean()) if bool(seam.any()) else float("nan")


def _band_width(feathered: np.ndarray) -> float:
    """About how wide the feather band is, px (its area over the mask's edge length)."""
    soft = np.count_nonzero((feathered > 0) & (feathered < 255))
    edge = np.count_nonzero(np.diff((feathered >= 128).astype(np.int8), axis=0)) + \
        np.count_nonzero(np.diff((feathered >= 128).astype(np.int8), axis=1))
    return soft / max(1, edge)

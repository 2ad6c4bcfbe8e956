"""Each model's native size drives generation: SDXL's ~1 megapixel and its aspect buckets.

SDXL was trained on about 1024x1024 pixels' worth of area in a fixed set of
aspect-ratio buckets; asked for 512x512 it paints a cramped, broken picture,
asked for 2048x2048 it repeats subjects.  So for a model family with buckets
a txt2img request far from the native area is generated at the native area
in the bucket nearest its aspect and resized to the asked size; a request
near the native area (within :data:`NEAR`) is generated as asked.  The result
says which (``info["native"]``).  SD1.5-family models have no buckets: they
diffuse at the asked size (rounded to 8; capped by a small model's
``max_size``) - unless the asked area is under a quarter of the native area
(:func:`area_plan`, any family without buckets): a 100x30 request to a
512-px model is a 13x4 latent, too few cells for the UNet to compose
anything but a flat field, so it is generated at the native area with the
asked aspect (936x280) and resized, and the result says so.

Buckets are SDXL's published training buckets (width x height at 1024
native), scaled to the model's native size and rounded to the VAE's multiple
(a tiny test model with a 64 px native size gets 64 px buckets).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

SDXL_BUCKETS_1024 = ((1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768),
                     (768, 1344), (1536, 640), (640, 1536))
FAMILY_BUCKETS = {"sdxl": SDXL_BUCKETS_1024}
NEAR = (0.7, 1.4)   # asked area / native area inside this: generate as asked


def vae_scale_factor(vae_config) -> int:
    """Pixels per latent cell along a side (diffusers' ``pipe.vae_scale_factor``): 8 for the SD families.

    ``vae_config``: a VAE's config, as diffusers gives it or as read from its ``config.json``.
    The one place the factor is derived, for the engine and the training tools alike.
    """
    return 2 ** (len(vae_config["block_out_channels"]) - 1)


def buckets(family: str, native: int, mult: int = 8) -> List[Tuple[int, int]]:
    """The family's aspect buckets at ``native`` px (empty for families without buckets)."""
    table = FAMILY_BUCKETS.get(family, ())
    scale = native / 1024.0
    out = []
    for w, h in table:
        bw, bh = max(mult, round(w * scale / mult) * mult), max(mult, round(h * scale / mult) * mult)
        if (bw, bh) not in out:
            out.append((bw, bh))
    return out


def nearest_bucket(width: int, height: int, table: List[Tuple[int, int]]) -> Tuple[int, int]:
    """The bucket whose aspect is nearest (in log ratio) to ``width`` x ``height``."""
    aspect = math.log(width / height)
    return min(table, key=lambda b: abs(math.log(b[0] / b[1]) - aspect))


def plan(width: int, height: int, family: str, native: int, mult: int = 8) -> Optional[Dict[str, object]]:
    """None (generate as asked) or {"generated": [w, h], "how": ...} for a request far from native."""
    table = buckets(family, native, mult)
    if not table:
        return None
    ratio = (width * height) / float(native * native)
    if NEAR[0] <= ratio <= NEAR[1]:
        return None
    bw, bh = nearest_bucket(width, height, table)
    how = "downscaled" if ratio > NEAR[1] else "upscaled"
    return {"asked": [width, height], "generated": [bw, bh],
            "how": f"generated at the model's native area in its {bw}x{bh} aspect bucket, then {how} to "
                   f"{width}x{height}"}


SMALL = 0.25   # bucketless families: asked area / native area below this is generated at the native area


def area_plan(width: int, height: int, native: int, mult: int = 8, max_size: int = 0,
              diffused: Optional[Tuple[int, int]] = None) -> Optional[Dict[str, object]]:
    """None (generate as asked) or {"generated": [w, h], "how": ...} for a request far *below* native.

    For families without buckets (SD1.5 and anything else): under
    :data:`SMALL` of the native area the picture is generated at the native
    pixel area with the asked aspect, each side rounded to the VAE's
    multiple (and capped by a small model's ``max_size``), then downsized.
    Requests above that are generated as asked, as SD1.5 artists expect
    (fine-tunes are often trained at 768 px on a 512-px base).  ``diffused``
    is the size the request would be diffused at otherwise (rounded, capped
    by ``max_size``): the area test is on it, since that is what the UNet sees.
    """
    if native <= 0 or width <= 0 or height <= 0:
        return None
    plain = diffused or (max(mult, int(round(width / mult)) * mult), max(mult, int(round(height / mult)) * mult))
    if (plain[0] * plain[1]) / float(native * native) >= SMALL:
        return None
    aspect = width / float(height)
    gw, gh = native * math.sqrt(aspect), native / math.sqrt(aspect)
    if max_size and max(gw, gh) > max_size:
        scale = max_size / max(gw, gh)
        gw, gh = gw * scale, gh * scale
    gw, gh = max(mult, int(round(gw / mult)) * mult), max(mult, int(round(gh / mult)) * mult)
    if gw * gh <= plain[0] * plain[1]:
        return None    # capped back to (or below) what the asked size gives: nothing gained
    return {"asked": [width, height], "generated": [gw, gh],
            "how": f"generated at the model's native area with the asked aspect ({gw}x{gh}), then downscaled to "
                   f"{width}x{height}"}

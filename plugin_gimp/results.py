"""From a daemon :class:`Result` to the layers the plug-in will add (pure: no GIMP here).

Each picture becomes a :class:`LayerPlan`: where the new layer goes (image
coordinates), its RGBA pixels and, for edits, its layer mask.  The GIMP side
only executes plans, so the placement rules are tested without GIMP:

* an edit's layer covers the patch's box with the patch's *new* pixels,
  opaque (so it still makes sense with its mask disabled), and its layer
  mask is the patch's alpha - the selection as the daemon grew and
  feathered it.  Layer over original is then the daemon's own "over"
  paste-back: the full result, to within 8-bit rounding (taking the colour
  from the full result instead would blend the soft edge twice);
* a refine of a whole layer covers that layer and keeps its transparency
  (a character cut out on its own layer stays cut out);
* a daemon that sends no patches still gives a correct layer: the whole
  sent region, masked by the selection that was sent - unless it ran no
  step at all (a denoising strength too low to change anything), where
  there is nothing to add.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from ..protocol.messages import Image, Result
from . import pixels
from .geometry import Rect, place_patch


@dataclass
class LayerPlan:
    place: Rect                  # image coordinates
    rgba: bytes                  # place.width x place.height RGBA8
    mask: Optional[bytes]        # gray8 layer mask of the same size, or None
    seed: int


def check_size(img: Image, region: Rect) -> None:
    """The daemon must answer with the size it was sent; anything else would misplace pixels."""
    if img.format != "rgba8":
        raise ValueError(f"the daemon answered a {img.format} picture where rgba8 was expected")
    if (img.width, img.height) != (region.width, region.height):
        raise ValueError(f"the daemon answered {img.width}x{img.height} for a {region.width}x{region.height} "
                         f"picture")


def _seed(result: Result, i: int) -> int:
    return result.seeds[i] if i < len(result.seeds) else -1


def edit_layers(result: Result, sent: Rect, sent_mask: bytes) -> List[LayerPlan]:
    """One masked layer per picture of an edit of the region ``sent`` (image coordinates)."""
    plans = []
    for i, img in enumerate(result.images):
        check_size(img, sent)
        if i < len(result.patches):
            patch = result.patches[i]
            if patch.image.format != "rgba8":
                raise ValueError(f"patch {i} is {patch.image.format}, not rgba8")
            place = place_patch(sent, patch.x, patch.y, patch.image.width, patch.image.height)
            plans.append(LayerPlan(place, pixels.with_alpha(patch.image.data), pixels.alpha_of(patch.image.data),
                                   _seed(result, i)))
        elif result.steps_run > 0:
            pixels.check_size(sent_mask, sent.width, sent.height, pixels.GRAY, "selection mask")
            plans.append(LayerPlan(sent, img.data, sent_mask, _seed(result, i)))
    return plans


def refine_layers(result: Result, region: Rect, source: Optional[bytes]) -> List[LayerPlan]:
    """One layer per picture of an img2img of ``region``; ``source`` (the layer's RGBA) lends its alpha.

    ``source=None`` (the visible image was refined) gives opaque layers.
    """
    alpha = None
    if source is not None:
        a = pixels.alpha_of(source)
        if pixels.mask_coverage(a)[2] != len(a):   # some transparency worth keeping
            alpha = a
    plans = []
    for i, img in enumerate(result.images):
        check_size(img, region)
        data = pixels.with_alpha(img.data, alpha) if alpha is not None else img.data
        plans.append(LayerPlan(region, data, None, _seed(result, i)))
    return plans


def generate_layers(result: Result) -> List[LayerPlan]:
    """Text-to-image pictures as layers at the canvas origin."""
    return [LayerPlan(Rect(0, 0, img.width, img.height), img.data, None, _seed(result, i))
            for i, img in enumerate(result.images)]

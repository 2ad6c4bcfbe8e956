"""Where a result goes: one new paint layer per image, never a change to the artist's layers.

* text to image / img2img: the full image at the window's origin (the
  canvas's top-left corner);
* an edit: only the patch - the changed region whose alpha is the feathered
  mask - at the patch's offset inside the window, so everything outside the
  selection stays exactly as it was and hiding or deleting the layer undoes
  the edit;
* a batch: one layer per image, the first visible and the others hidden, so
  the artist flips through variants with the layer's eye icon (documented in
  docs/krita.md).

Adding each layer is a single "Add Layer" undo step in Krita: the pixels are
written into the layer before it joins the document.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from .masks import Rect, patch_from_full
from .planning import JobPlan

NAME_PROMPT_CHARS = 40


@dataclass
class LayerPlan:
    """One layer to add: straight-alpha RGBA8 ``rgba`` of ``width`` x ``height`` at (x, y)."""

    name: str
    x: int
    y: int
    width: int
    height: int
    rgba: bytes
    visible: bool = True
    seed: int = -1

    @property
    def rect(self) -> Rect:
        return self.x, self.y, self.width, self.height


class PlacementError(ValueError):
    """The daemon's answer does not fit the canvas it was asked about."""


def layer_name(plan: JobPlan, index: int, count: int, seed: Optional[int]) -> str:
    prompt = " ".join(plan.request.prompt.split())
    if len(prompt) > NAME_PROMPT_CHARS:
        prompt = prompt[:NAME_PROMPT_CHARS - 1].rstrip() + "…"
    verb = {"txt2img": "Generated", "img2img": "Refined", "edit": "Inpainted"}[plan.kind]
    if plan.kind == "edit" and plan.request.strength < 1.0:
        verb = "Refined selection"
    parts = [f"Impasto {verb}"]
    if count > 1:
        parts[0] += f" {index + 1}/{count}"
    if prompt:
        parts.append(prompt)
    if seed is not None and seed >= 0:
        parts.append(f"seed {seed}")
    return " · ".join(parts)


def plan_layers(plan: JobPlan, result: Any) -> List[LayerPlan]:
    """Turn a ``Result`` into the layers to add (canvas coordinates)."""
    images = list(result.images)
    patches = list(getattr(result, "patches", []) or [])
    seeds = list(result.seeds)
    wx, wy, ww, wh = plan.window
    count = len(patches) if plan.kind == "edit" and patches else len(images)
    if count == 0:
        raise PlacementError("the daemon returned no image")
    layers: List[LayerPlan] = []
    for i in range(count):
        seed = seeds[i] if i < len(seeds) else None
        name = layer_name(plan, i, count, seed)
        if plan.kind == "edit":
            layers.append(_edit_layer(plan, images, patches, i, name, seed))
        else:
            img = images[i]
            _check_rgba(img, "image")
            if (img.width, img.height) != (ww, wh):
                raise PlacementError(
                    f"the daemon answered with {img.width}x{img.height} pixels for a {ww}x{wh} canvas")
            layers.append(LayerPlan(name, wx, wy, ww, wh, bytes(img.data), True, seed if seed is not None else -1))
        layers[-1].visible = i == 0
    return layers


def _edit_layer(plan: JobPlan, images: list, patches: list, i: int, name: str, seed: Optional[int]) -> LayerPlan:
    wx, wy, ww, wh = plan.window
    if patches:
        p = patches[i]
        _check_rgba(p.image, "patch")
        if p.x < 0 or p.y < 0 or p.x + p.image.width > ww or p.y + p.image.height > wh:
            raise PlacementError(
                f"the patch {p.image.width}x{p.image.height} at {p.x},{p.y} falls outside the {ww}x{wh} request")
        return LayerPlan(name, wx + p.x, wy + p.y, p.image.width, p.image.height, bytes(p.image.data),
                         True, seed if seed is not None else -1)
    # A daemon without patches: cut the selection's box out of the full image, alpha = selection.
    img = images[i]
    _check_rgba(img, "image")
    if (img.width, img.height) != (ww, wh) or plan.mask is None or plan.mask_info is None:
        raise PlacementError("the daemon's edit answer has neither patches nor a full-size image")
    bx, by, bw, bh = plan.mask_info.bounds
    rect = (bx - wx, by - wy, bw, bh)
    rgba = patch_from_full(bytes(img.data), plan.mask, ww, wh, rect)
    return LayerPlan(name, bx, by, bw, bh, rgba, True, seed if seed is not None else -1)


def _check_rgba(img: Any, what: str) -> None:
    if getattr(img, "format", "rgba8") != "rgba8" or len(img.data) != img.width * img.height * 4:
        raise PlacementError(f"the daemon's {what} is not {img.width}x{img.height} RGBA")


"""Conversions between wire images (raw RGBA8 / gray8 bytes) and PIL images.

Artists' files come in every mode (RGB, RGBA, L, P, 16-bit, float); the engine
converts rather than refuses.
"""
from __future__ import annotations

import numpy as np
from PIL import Image as PILImage

from impasto.protocol.messages import Image as WireImage


def from_wire(img: WireImage) -> PILImage.Image:
    mode = "RGBA" if img.format == "rgba8" else "L"
    return PILImage.frombytes(mode, (img.width, img.height), img.data)


def to_wire(img: PILImage.Image) -> WireImage:
    img = to_rgba8(img)
    return WireImage(width=img.width, height=img.height, data=img.tobytes(), format="rgba8")


def mask_to_wire(img: PILImage.Image) -> WireImage:
    img = img.convert("L")
    return WireImage(width=img.width, height=img.height, data=img.tobytes(), format="gray8")


def to_rgba8(img: PILImage.Image) -> PILImage.Image:
    """Any PIL mode -> 8-bit RGBA (16-bit and float scaled, palettes expanded)."""
    if img.mode == "RGBA":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return PILImage.fromarray(arr, "L").convert("RGBA")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max() <= 1.0 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return PILImage.fromarray(arr, "L").convert("RGBA")
    if img.mode == "P" and "transparency" in img.info:
        return img.convert("RGBA")
    return img.convert("RGBA")


def to_rgb(img: PILImage.Image, background=(255, 255, 255)) -> PILImage.Image:
    """Composite transparency over ``background`` (diffusion sees no alpha).

    An opaque picture (the usual canvas) is the same pixels either way: it skips the
    composite (3.3 ms of a 512 px live job, 0.5 ms for the check and conversion).
    """
    img = to_rgba8(img)
    if img.getchannel("A").getextrema() == (255, 255):
        return img.convert("RGB")
    base = PILImage.new("RGBA", img.size, background + (255,))
    base.alpha_composite(img)
    return base.convert("RGB")


def array_to_wire(arr: np.ndarray) -> WireImage:
    """An HxWx4 uint8 RGBA array (or a PIL image) -> a wire image (one copy of the bytes)."""
    if isinstance(arr, PILImage.Image):
        return to_wire(arr)
    h, w = arr.shape[:2]
    return WireImage(width=w, height=h, data=np.ascontiguousarray(arr, dtype=np.uint8).tobytes(), format="rgba8")


def to_rgba_array(img: PILImage.Image) -> np.ndarray:
    """Any PIL mode -> HxWx4 uint8 RGBA array (what every runner returns)."""
    return np.asarray(to_rgba8(img), dtype=np.uint8)


def wire_array(img: WireImage) -> np.ndarray:
    """A read-only numpy view of a wire image's bytes (no copy: a 4096x4096 layer is 64 MiB)."""
    channels = WireImage.CHANNELS[img.format]
    arr = np.frombuffer(img.data, np.uint8)
    return arr.reshape(img.height, img.width, channels) if channels > 1 else arr.reshape(img.height, img.width)

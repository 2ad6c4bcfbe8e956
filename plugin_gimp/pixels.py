"""Pixel buffers as plain ``bytes``: cropping, alpha, masks - no numpy, no Pillow.

GIMP's Windows Python cannot load numpy or Pillow, and GEGL already hands
the plug-in packed rows (``R'G'B'A u8``: 4 bytes a pixel, straight alpha;
``Y u8``: 1 byte a pixel), the same layout as the wire's ``rgba8`` /
``gray8``.  Everything here works row-wise on bytes so the per-pixel work
stays inside CPython's C loops (slicing, ``bytes.translate``, ``strip``).
"""
from __future__ import annotations

from typing import Optional, Tuple

from ..protocol.region import mask_box
from .geometry import Rect

RGBA = 4
GRAY = 1


def check_size(data: bytes, width: int, height: int, channels: int, what: str = "pixels") -> None:
    """Refuse buffers whose length does not match their declared size."""
    if width <= 0 or height <= 0:
        raise ValueError(f"{what}: size {width}x{height} is not positive")
    expected = width * height * channels
    if len(data) != expected:
        raise ValueError(f"{what}: {len(data)} bytes for {width}x{height}x{channels} ({expected} expected)")


def crop(data: bytes, width: int, height: int, channels: int, rect: Rect) -> bytes:
    """The pixels of ``rect`` (in the buffer's own coordinates) as packed rows."""
    check_size(data, width, height, channels)
    if rect.empty or not Rect(0, 0, width, height).contains(rect):
        raise ValueError(f"crop {rect.as_tuple()} is outside the {width}x{height} buffer")
    if rect.x == 0 and rect.width == width:
        start = rect.y * width * channels
        return bytes(data[start:start + rect.height * width * channels])
    stride, row = width * channels, rect.width * channels
    out = bytearray(rect.height * row)
    mv = memoryview(data)
    for i in range(rect.height):
        start = (rect.y + i) * stride + rect.x * channels
        out[i * row:(i + 1) * row] = mv[start:start + row]
    return bytes(out)


def alpha_of(rgba: bytes) -> bytes:
    """The alpha channel of straight RGBA8 pixels, as gray8."""
    if len(rgba) % RGBA:
        raise ValueError(f"{len(rgba)} bytes are not whole RGBA pixels")
    return bytes(rgba[3::4])


def with_alpha(rgba: bytes, alpha: Optional[bytes] = None) -> bytes:
    """RGBA8 with its alpha replaced by ``alpha`` (gray8), or made opaque when ``None``."""
    if len(rgba) % RGBA:
        raise ValueError(f"{len(rgba)} bytes are not whole RGBA pixels")
    n = len(rgba) // RGBA
    out = bytearray(rgba)
    if alpha is None:
        out[3::4] = b"\xff" * n
    else:
        if len(alpha) != n:
            raise ValueError(f"alpha has {len(alpha)} values for {n} pixels")
        out[3::4] = alpha
    return bytes(out)


def rgb_to_rgba(rgb: bytes) -> bytes:
    """Packed RGB8 -> opaque RGBA8."""
    if len(rgb) % 3:
        raise ValueError(f"{len(rgb)} bytes are not whole RGB pixels")
    n = len(rgb) // 3
    out = bytearray(n * 4)
    out[0::4], out[1::4], out[2::4] = rgb[0::3], rgb[1::3], rgb[2::3]
    out[3::4] = b"\xff" * n
    return bytes(out)


def rgba_to_rgb(rgba: bytes) -> bytes:
    """RGBA8 -> RGB8 dropping alpha (previews, which are opaque)."""
    if len(rgba) % RGBA:
        raise ValueError(f"{len(rgba)} bytes are not whole RGBA pixels")
    n = len(rgba) // RGBA
    out = bytearray(n * 3)
    out[0::3], out[1::3], out[2::3] = rgba[0::4], rgba[1::4], rgba[2::4]
    return bytes(out)


def mask_bbox(mask: bytes, width: int, height: int) -> Optional[Rect]:
    """Bounding box of the non-zero pixels of a gray8 mask, ``None`` when all zero (the client core's scan)."""
    check_size(mask, width, height, GRAY, "mask")
    box = mask_box(mask, width, height)
    return None if box is None else Rect.from_corners(*box)


def mask_coverage(mask: bytes) -> Tuple[int, int, int]:
    """(zero, soft, full) pixel counts of a gray8 mask: soft edges are values 1..254."""
    zero = mask.count(0)
    full = mask.count(255)
    return zero, len(mask) - zero - full, full


def binarize(mask: bytes, threshold: int = 128) -> bytes:
    """0/255 mask: values >= threshold become 255 (for "hard edge" comparisons in tests and UI)."""
    table = bytes(255 if v >= threshold else 0 for v in range(256))
    return bytes(mask).translate(table)


def paste(dst: bytearray, dst_width: int, src: bytes, src_width: int, x: int, y: int, channels: int) -> None:
    """Copy ``src`` rows into ``dst`` at (x, y); both packed, same channel count, src fully inside."""
    src_height = len(src) // (src_width * channels)
    dst_height = len(dst) // (dst_width * channels)
    if x < 0 or y < 0 or x + src_width > dst_width or y + src_height > dst_height:
        raise ValueError(f"{src_width}x{src_height} at ({x}, {y}) does not fit {dst_width}x{dst_height}")
    row = src_width * channels
    for i in range(src_height):
        start = ((y + i) * dst_width + x) * channels
        dst[start:start + row] = src[i * row:(i + 1) * row]

"""Selections as masks: bounds, softness, and cutting a patch out of a full result.

A Krita selection is a gray8 plane (255 = selected, in between = a soft or
feathered edge).  It is sent as the edit's mask unchanged, so a soft
selection keeps its softness; the daemon adds the feather / grow the artist
asked for on top.  Everything here works on whole rows with ``bytes``
methods (no per-pixel Python loop), so a 4K selection costs milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

from ...protocol.region import mask_box
from .pixels import rgba8_alpha_product

Rect = Tuple[int, int, int, int]  # x, y, width, height


@dataclass(frozen=True)
class MaskInfo:
    """What the plugin needs to know about a selection before sending it."""

    bounds: Optional[Rect]    # tight box around every pixel > 0; None: nothing selected
    soft: bool                # any partially selected pixel (feathered / soft brush selection)
    coverage: float           # selected fraction of the canvas, 0..1 (partial pixels count partly)

    @property
    def empty(self) -> bool:
        return self.bounds is None


def mask_bounds(mask: bytes, width: int, height: int) -> Optional[Rect]:
    """The tight rectangle around all non-zero mask pixels, or None for an empty mask (the client core's scan)."""
    box = mask_box(mask, width, height)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    return x0, y0, x1 - x0, y1 - y0


def analyse(mask: bytes, width: int, height: int) -> MaskInfo:
    """:class:`MaskInfo` of a whole-canvas gray8 plane (:func:`analyse_boxed` of the canvas's box)."""
    return analyse_boxed(mask, width, height)


@dataclass(frozen=True)
class BoxedMask:
    """A selection read within its bounding box: gray8 ``data`` of ``box`` (canvas coordinates).

    Krita knows a selection's bounds without reading it (``Selection.x()`` ...
    ``height()``), so the docker reads only that box - on a 4K canvas a
    600 x 500 selection is 0.3 MB instead of 8.3 MB.  Outside the box the
    selection is 0.
    """

    box: Rect
    data: bytes


def boxed(selection: Union[bytes, BoxedMask], width: int, height: int) -> BoxedMask:
    """``selection`` as a :class:`BoxedMask` (a whole-canvas gray8 plane is the box of the canvas)."""
    if isinstance(selection, BoxedMask):
        return selection
    return BoxedMask((0, 0, width, height), bytes(selection))


def analyse_boxed(selection: Union[bytes, BoxedMask], width: int, height: int) -> MaskInfo:
    """The selection's bounds (canvas coordinates), softness and coverage of the canvas.

    Outside its box the selection is 0, so the box's pixels alone give all three.
    """
    sel = boxed(selection, width, height)
    bx, by, bw, bh = sel.box
    bounds = mask_bounds(sel.data, bw, bh)
    if bounds is None:
        return MaskInfo(None, False, 0.0)
    x, y, w, h = bounds
    mask = sel.data
    soft = len(mask.translate(None, b"\x00\xff")) > 0
    full = mask.count(255)
    partial = len(mask) - full - mask.count(0)
    coverage = (full + 0.5 * partial) / float(width * height)
    return MaskInfo((bx + x, by + y, w, h), soft, coverage)


def crop_boxed(selection: BoxedMask, rect: Rect) -> bytes:
    """Gray8 of ``rect`` (canvas coordinates): the selection where its box covers it, 0 elsewhere."""
    bx, by, bw, bh = selection.box
    x, y, w, h = rect
    if bx <= x and by <= y and x + w <= bx + bw and y + h <= by + bh:
        return crop(selection.data, bw, (x - bx, y - by, w, h), 1)
    x0, x1 = max(x, bx), min(x + w, bx + bw)       # the columns the box covers
    empty = bytes(w)
    rows = []
    for row in range(y, y + h):
        if by <= row < by + bh and x0 < x1:
            start = (row - by) * bw
            rows.append(bytes(x0 - x) + selection.data[start + x0 - bx:start + x1 - bx] + bytes(x + w - x1))
        else:
            rows.append(empty)
    return b"".join(rows)


def crop(data: bytes, width: int, rect: Rect, channels: int) -> bytes:
    """Rows ``rect`` of an image ``width`` pixels wide with ``channels`` bytes a pixel."""
    x, y, w, h = rect
    stride = width * channels
    return b"".join(data[(y + r) * stride + x * channels:(y + r) * stride + (x + w) * channels] for r in range(h))


def grow_rect(rect: Rect, margin: int, width: int, height: int) -> Rect:
    """``rect`` grown by ``margin`` on every side, clipped to the canvas."""
    x, y, w, h = rect
    x0, y0 = max(0, x - margin), max(0, y - margin)
    x1, y1 = min(width, x + w + margin), min(height, y + h + margin)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def patch_from_full(image: bytes, mask: bytes, width: int, height: int, rect: Rect) -> bytes:
    """RGBA8 of ``rect`` from a full-size result, its alpha multiplied by the mask.

    The fallback when a daemon answers an edit with full images but no
    ``patches``: the layer then still holds only the selected region.
    """
    if len(image) != width * height * 4:
        raise ValueError("the result image does not match the canvas size")
    return rgba8_alpha_product(crop(image, width, rect, 4), crop(mask, width, rect, 1))

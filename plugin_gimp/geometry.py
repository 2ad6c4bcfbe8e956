"""Rectangles in image coordinates: what to send, and where results go.

GIMP hands the plug-in a selection (bounds + a soft channel) and layers with
offsets; the daemon answers with patches positioned inside the picture it was
sent.  Keeping that arithmetic here, free of GIMP, lets it be tested alone:

* :func:`selection_rect` reads ``Gimp.Selection.bounds()``'s tuple (whose
  first item is the call's success flag, not "has a selection");
* which part of the image an "only masked" edit sends is the client core's
  rule (:func:`impasto.protocol.planner.window_for`, via ``jobs.edit_window``),
  so a 6000x4000 photo with a small selection sends a few hundred kilobytes;
* :func:`place_patch` turns a patch's position inside that sent picture into
  a layer offset in the image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple


@dataclass(frozen=True)
class Rect:
    """An axis-aligned pixel rectangle: (x, y) is the top-left corner."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    @property
    def area(self) -> int:
        return 0 if self.empty else self.width * self.height

    @classmethod
    def from_corners(cls, x1: int, y1: int, x2: int, y2: int) -> "Rect":
        return cls(x1, y1, x2 - x1, y2 - y1)

    def translate(self, dx: int, dy: int) -> "Rect":
        return Rect(self.x + dx, self.y + dy, self.width, self.height)

    def grow(self, by: int) -> "Rect":
        return Rect(self.x - by, self.y - by, self.width + 2 * by, self.height + 2 * by)

    def intersect(self, other: "Rect") -> "Rect":
        x1, y1 = max(self.x, other.x), max(self.y, other.y)
        x2, y2 = min(self.right, other.right), min(self.bottom, other.bottom)
        if x2 <= x1 or y2 <= y1:
            return Rect(x1, y1, 0, 0)
        return Rect.from_corners(x1, y1, x2, y2)

    def contains(self, other: "Rect") -> bool:
        return (self.x <= other.x and self.y <= other.y
                and other.right <= self.right and other.bottom <= self.bottom)

    def as_tuple(self) -> Tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)


def selection_rect(bounds: Sequence) -> Optional[Rect]:
    """``Gimp.Selection.bounds(image)`` -> the selection's box, or ``None`` when nothing is selected.

    GIMP returns ``(success, non_empty, x1, y1, x2, y2)``; with no selection
    it reports the whole image as bounds, which must not be mistaken for an
    all-selected canvas.
    """
    if len(bounds) != 6:
        raise ValueError(f"expected (success, non_empty, x1, y1, x2, y2), got {tuple(bounds)!r}")
    success, non_empty, x1, y1, x2, y2 = bounds
    if not success or not non_empty:
        return None
    rect = Rect.from_corners(int(x1), int(y1), int(x2), int(y2))
    return None if rect.empty else rect


def place_patch(sent: Rect, patch_x: int, patch_y: int, patch_w: int, patch_h: int) -> Rect:
    """Where a patch positioned at (patch_x, patch_y) of the sent picture lands in the image.

    Patches must lie inside the picture they belong to: anything else is a
    daemon bug that must not silently put a layer in the wrong place.
    """
    local = Rect(patch_x, patch_y, patch_w, patch_h)
    if local.empty or not Rect(0, 0, sent.width, sent.height).contains(local):
        raise ValueError(
            f"patch {local.as_tuple()} does not fit the {sent.width}x{sent.height} picture that was sent"
        )
    return local.translate(sent.x, sent.y)


def generate_size(image_size: Optional[Tuple[int, int]], width: int, height: int,
                  fallback: int = 512) -> Tuple[int, int]:
    """The size to ask for in a text-to-image job.

    0 means "the image's size" (a new layer covering the canvas), or
    ``fallback`` when no image is open.  The daemon rounds to what its model
    can diffuse and scales back, so any size the limits allow is fine.
    """
    iw, ih = image_size if image_size else (fallback, fallback)
    w = width if width > 0 else iw
    h = height if height > 0 else ih
    if w <= 0 or h <= 0:
        raise ValueError(f"size {w}x{h} is not positive")
    return int(w), int(h)

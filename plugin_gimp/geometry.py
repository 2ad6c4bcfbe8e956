"""Rectangles in image coordinates: what to send, and where results go.

GIMP hands the plug-in a selection (bounds + a soft channel) and layers with
offsets; the daemon answers with patches positioned inside the picture it was
sent.  Keeping that arithmetic here, free of GIMP, lets it be tested alone:

* :func:`selection_rect` reads ``Gimp.Selection.bounds()``'s tuple (whose
  first item is the call's success flag, not "has a selection");
* :func:`context_rect` picks the part of the image sent for an "only masked"
  edit: the selection's bounds, grown by the feather band and the artist's
  padding, widened to the model's square aspect - the window the daemon would
  cut from the whole picture anyway, so a 6000x4000 photo with a small
  selection sends a few hundred kilobytes, never the whole canvas;
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


def feather_reach(mask_blur: int, grow: int) -> int:
    """How far past the selection's edge the daemon's feathered mask can reach, in px.

    Growing moves the edge out by ``grow``; Impasto's feather (three box
    blurs) reaches exactly ``mask_blur`` px further - twice that is allowed
    so a daemon feathering with Gaussian tails is covered too.
    """
    return max(grow, 0) + 2 * max(mask_blur, 0)


def context_rect(selection: Rect, image: Rect, padding: int, mask_blur: int = 0, grow: int = 0,
                 aspect_square: bool = True, align: int = 8, slack: int = 8) -> Rect:
    """The part of the image to send for an "only masked" edit of ``selection``.

    The selection's box grows by the feather reach and the padding (the
    context the artist asked for), then widens to a square (SD models are
    trained on square pictures, and the daemon widens its window the same
    way), then is aligned outwards to ``align`` px and shifted - not cropped -
    to stay inside the image where it fits.  ``slack`` px more on every side
    leave room for the daemon rounding its window to its diffusion size's
    exact aspect.  The result always contains the selection plus its feather
    band (clipped to the image).
    """
    if selection.empty:
        raise ValueError("an empty selection has no context")
    if image.empty:
        raise ValueError("the image is empty")
    reach = feather_reach(mask_blur, grow) + max(padding, 0) + max(slack, 0)
    want = selection.grow(reach)
    w, h = want.width, want.height
    if aspect_square:
        side = max(w, h)
        w = h = side
    if align > 1:
        w = -(-w // align) * align
        h = -(-h // align) * align
    w, h = min(w, image.width), min(h, image.height)
    # Centre on the selection, then slide inside the image.
    cx2, cy2 = selection.x * 2 + selection.width, selection.y * 2 + selection.height
    x = (cx2 - w) // 2
    y = (cy2 - h) // 2
    x = min(max(x, image.x), image.right - w)
    y = min(max(y, image.y), image.bottom - h)
    return Rect(x, y, w, h)


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

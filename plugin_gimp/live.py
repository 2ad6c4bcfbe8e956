"""GIMP's "Repaint Now": the live-painting job on demand (GIMP has no stroke event to follow).

The job is the client core's live job (:func:`impasto.protocol.live.plan_live`),
byte for byte what Krita's and the canvas's live modes send after a stroke:
the visible picture (or, with a selection, the selection's "only masked"
window) repainted at the live model's settings, one picture, previews off,
``live`` set - so the daemon keeps the prompt's embeddings between presses
and drops an older repaint still queued.  Bind a shortcut to
Filters > Impasto > Repaint Now and press it after each stroke.

The picture lands in one layer named :data:`LIVE_LAYER` at the top of the
image, replaced at every press (the old one is hidden while the canvas is
read, so a repaint never repaints the last repaint).  To keep one, rename
the layer; to discard it, delete it.  A press is one undo group.

The seed stays the same between presses (the artist's seed, else one tied to
the image) so the picture changes with the strokes, not with the dice.
Pure functions here (no GIMP): :func:`repaint_request` is tested without GIMP.
"""
from __future__ import annotations

import zlib
from typing import Callable, Optional, Tuple

from ..protocol.live import plan_live, window_for_live
from ..protocol.planner import JobPlan
from .geometry import Rect

PROC_REPAINT = "impasto-repaint-now"
LIVE_LAYER = "Impasto live"


def session_seed(seed: int, image_id: int) -> int:
    """The artist's seed, or (random seed asked) one fixed for this image: no flicker between presses."""
    return int(seed) if seed >= 0 else zlib.crc32(f"impasto-live-{image_id}".encode()) & 0x7FFFFFFF


def repaint_request(fields, canvas: Rect, selection: Optional[Rect], seed: int,
                    read_visible: Callable[[Rect], bytes],
                    read_selection: Callable[[Rect], bytes]) -> Tuple[JobPlan, Rect, Optional[bytes]]:
    """(the live job's plan, the image rectangle it covers, the gray8 mask sent or None).

    ``fields`` are :class:`.jobs.JobFields`; ``read_visible(rect)`` / ``read_selection(rect)``
    read RGBA8 / gray8 of an image rectangle.
    """
    settings = fields.to_settings()
    size = (canvas.width, canvas.height)
    box = None
    if selection is not None and not selection.intersect(canvas).empty:
        sel = selection.intersect(canvas)
        box = (sel.x, sel.y, sel.right, sel.bottom)
    x0, y0, x1, y1 = window_for_live(size, box, settings)
    sent = Rect(x0, y0, x1 - x0, y1 - y0)
    rgba = read_visible(sent)
    mask = read_selection(sent) if box is not None else None
    if mask is not None and not mask.strip(b"\x00"):
        mask, box = None, None
        x0, y0, x1, y1 = window_for_live(size, None, settings)
        sent = Rect(x0, y0, x1 - x0, y1 - y0)
        rgba = read_visible(sent)
    plan = plan_live(size, settings, seed, window=(sent.x, sent.y, sent.right, sent.bottom), rgba=rgba,
                     mask=mask, selection=box, recommendation=fields.recommendation)
    return plan, sent, mask

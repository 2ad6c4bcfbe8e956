"""From "the artist pressed Generate / Refine / Inpaint" to a request, and back - on the client core.

The canvas keeps only host glue here: which mask a button means, reading
the document's pixels, where previews are drawn and how results become
staged candidates.  What the job *is* is decided by the one planner
(:mod:`impasto.protocol.planner`), exactly as in Krita, GIMP and the CLI:

* **Generate** - text to image at the canvas size;
* **Refine** - img2img of the picture; with a selection, the planner's edit
  of the selection at the denoising strength (outside pixels come back
  bit-identical, as in Krita and GIMP);
* **Inpaint** - the same edit, of the painted mask (or, with no mask painted,
  the selection), with "only masked" padding, grow, mask blur and fill.

An edit sends only the planner's window around the mask; the daemon's
patches are placed relative to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QImage

from impasto.protocol import planner, region
from impasto.protocol.errors import PlanError  # noqa: F401 (the canvas's callers catch it from here)
from impasto.protocol.messages import Generate, Result
from impasto.protocol.settings import Recommendation

from . import control_layers, qt_images
from .document import Document
from .settings import GenerationSettings
from .staging import Candidate

MODES = planner.ACTIONS


@dataclass
class JobPlan:
    mode: str
    request: Generate
    settings: GenerationSettings
    target: QRect                        # the canvas rectangle the request's picture covers (the sent window)
    preview_rect: QRect                  # the region's context box: where live previews are drawn
    mask: Optional[np.ndarray] = None    # edits: the canvas-size mask, to clip previews to it
    core: Optional[planner.JobPlan] = None
    _preview_clips: Optional[dict] = None

    def preview_image(self, preview: QImage, rect: QRect) -> QImage:
        """A live preview scaled to ``rect``; for edits only where the mask (feathered) repaints.

        Outside the mask the daemon puts the original pixels back, so showing
        the half-formed region there would only flicker over the picture.
        """
        if self.mask is None or rect.isEmpty():
            return preview
        key = (rect.x(), rect.y(), rect.width(), rect.height())
        if self._preview_clips is None:
            self._preview_clips = {}
        clip = self._preview_clips.get(key)
        if clip is None:
            clip = feather(self.mask[rect.top():rect.bottom() + 1, rect.left():rect.right() + 1],
                           self.settings.mask_blur)
            self._preview_clips = {key: clip}
        return qt_images.multiply_alpha(_fit(preview, rect), clip)


def _qrect(box) -> QRect:
    x0, y0, x1, y1 = box
    return QRect(x0, y0, x1 - x0, y1 - y0)


def _box(rect: QRect):
    return rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1


def mask_for(doc: Document, mode: str) -> Optional[QImage]:
    """The gray8 mask a button works on: Inpaint prefers a painted mask, both use the selection."""
    if mode == planner.INPAINT and doc.has_mask():
        return doc.mask
    if mode in (planner.REFINE, planner.INPAINT) and doc.has_selection():
        return doc.selection_mask()
    return None


def plan(doc: Document, s: GenerationSettings, mode: str,
         recommendation: Optional[Recommendation] = None) -> JobPlan:
    """The planner's job for ``mode`` on ``doc``; :class:`PlanError` says what to fix."""
    size = (doc.width, doc.height)
    mask_img = mask_for(doc, mode)
    mask_arr = qt_images.gray_array(mask_img) if mask_img is not None else None
    box = region.mask_box(mask_arr.tobytes(), *size) if mask_arr is not None else None
    if mode == planner.INPAINT and box is None:
        raise PlanError("Nothing to inpaint: paint over the area with the mask brush (M) or select it first.",
                        "mask")
    window = planner.window_for(size, box, s, mode)
    rect = _qrect(window)
    rgba = qt_images.to_wire(doc.composite(rect)).data if planner.needs_pixels(mode, box is not None) else None
    mask = np.ascontiguousarray(mask_arr[rect.top():rect.bottom() + 1, rect.left():rect.right() + 1]).tobytes() \
        if box is not None else None
    s = s.resolved(recommendation)         # a staged result records what was sent, not "model default"
    core = planner.plan_job(size, s, mode, window, rgba, mask, box,
                            controls=control_layers.controls_for(doc, window))
    preview = rect
    if core.kind == "edit" and not s.whole_picture:
        reach = region.expand(box, region.feather_reach(s.grow, s.mask_blur), size)
        preview = _qrect(region.context_box(reach, size, s.padding))
    return JobPlan(mode, core.request, s, rect, preview, mask_arr if core.kind == "edit" else None, core)


def plan_generate(doc: Document, s: GenerationSettings) -> JobPlan:
    return plan(doc, s, planner.GENERATE)


def plan_refine(doc: Document, s: GenerationSettings) -> JobPlan:
    return plan(doc, s, planner.REFINE)


def plan_inpaint(doc: Document, s: GenerationSettings) -> JobPlan:
    return plan(doc, s, planner.INPAINT)


def preview_rect(plan: "JobPlan", preview_width: int, preview_height: int, canvas: QRect) -> QRect:
    """Where to draw a live preview: an edit's region takes the preview's aspect (step 4 of the region rule)."""
    if plan.mask is not None and plan.preview_rect != plan.target:
        return _qrect(region.fit_aspect(_box(plan.preview_rect), preview_width, preview_height, _box(plan.target)))
    return plan.preview_rect


def feather(coverage: np.ndarray, radius: int) -> np.ndarray:
    """Soften a coverage mask by ``radius`` px (three box blurs: close to a Gaussian), uint8 in and out."""
    if radius <= 0:
        return coverage
    out = coverage.astype(np.float32)
    r = max(1, int(round(radius / 2)))
    for axis in (0, 1):
        for _ in range(3):
            pad = [(0, 0), (0, 0)]
            pad[axis] = (r + 1, r)
            padded = np.pad(out, pad, mode="edge")
            csum = np.cumsum(padded, axis=axis, dtype=np.float64)
            hi = np.take(csum, np.arange(2 * r + 1, padded.shape[axis]), axis=axis)
            lo = np.take(csum, np.arange(0, padded.shape[axis] - 2 * r - 1), axis=axis)
            out = ((hi - lo) / (2 * r + 1)).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _fit(image: QImage, rect: QRect) -> QImage:
    if (image.width(), image.height()) == (rect.width(), rect.height()):
        return image
    return image.scaled(rect.width(), rect.height(), Qt.AspectRatioMode.IgnoreAspectRatio,
                        Qt.TransformationMode.SmoothTransformation)


def candidates_from_result(plan: JobPlan, result: Result) -> List[Candidate]:
    """One staged candidate per image of ``result``, placed where the plan said."""
    out: List[Candidate] = []
    use_patches = plan.mask is not None and len(result.patches) == len(result.images)
    ox, oy = plan.target.left(), plan.target.top()
    for i, image in enumerate(result.images):
        seed = result.seeds[i] if i < len(result.seeds) else -1
        if use_patches:
            patch = result.patches[i]
            pixels = qt_images.from_wire(patch.image)
            rect = QRect(patch.x + ox, patch.y + oy, pixels.width(), pixels.height()).intersected(plan.target)
            pixels = pixels.copy(rect.translated(-patch.x - ox, -patch.y - oy))
        else:
            rect = QRect(plan.target)
            pixels = _fit(qt_images.from_wire(image), rect)
        if rect.isEmpty():
            continue
        out.append(Candidate(pixels, rect, seed, plan.mode, plan.settings, result.job,
                             list(result.warnings), dict(result.info)))
    return out

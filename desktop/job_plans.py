"""From "the artist pressed Generate / Refine / Inpaint" to a request, and back.

A :class:`JobPlan` is the request plus where its results land on the canvas
and where its live previews are drawn.  The three buttons mean:

* **Generate** - text to image at the canvas size (at most about the
  model's native size, then scaled up: SD1.5 repeats itself when asked for
  large pictures).
* **Refine** - img2img of the picture, or of the selected area only (the
  result is clipped to the selection's shape, feathered by *mask blur*).
* **Inpaint** - repaint under the mask (or, with no mask painted, inside the
  selection), with "only masked" padding, grow, feather and fill mode.

Every plan is checked with the protocol's own ``validate_job`` before it is
sent, so a bad value is reported with the field to fix, not by the daemon.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QImage

from impasto.protocol.messages import Generate, ProtocolError, Result, validate_job

from . import qt_images
from .document import Document
from .settings import GenerationSettings
from .staging import Candidate

MODES = ("generate", "refine", "inpaint")


class PlanError(Exception):
    """The request cannot be made as things stand; ``str()`` tells the artist why, ``field`` what to fix."""

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.field = field


@dataclass
class JobPlan:
    mode: str
    request: Generate
    settings: GenerationSettings
    target: QRect                        # where result images land
    preview_rect: QRect                  # where live previews are drawn
    clip: Optional[np.ndarray] = None    # (h, w) coverage applied to results inside ``target``
    mask: Optional[np.ndarray] = None    # inpainting: the canvas-size mask sent, to clip previews to it
    _preview_clips: Optional[dict] = None

    def preview_image(self, preview: QImage, rect: QRect) -> QImage:
        """A live preview scaled to ``rect``; for inpainting only where the mask (feathered) repaints.

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


def generation_size(width: int, height: int, native: int) -> tuple:
    """The size to ask the model for: the canvas size, unless that is far beyond the model's native size.

    Then the same aspect ratio at about the native area (multiples of 8); the
    canvas scales the result up.  ``native`` 0 means unknown: ask for the canvas size.
    """
    if native and width * height > (native * 1.5) ** 2:
        scale = math.sqrt(native * native / (width * height))
        width, height = width * scale, height * scale
    return max(8, int(round(width / 8)) * 8), max(8, int(round(height / 8)) * 8)


def _request(s: GenerationSettings, **extra) -> Generate:
    return Generate(prompt=s.prompt, negative_prompt=s.negative_prompt, seed=s.seed, steps=s.steps,
                    cfg_scale=s.cfg_scale, batch_size=s.batch_size, sampler=s.sampler, model=s.model,
                    concepts=[(n, float(w)) for n, w in s.concepts], preview=True, **extra)


def _validated(plan: JobPlan) -> JobPlan:
    if not plan.request.job:
        plan.request.job = "pending-check"  # validate_job wants an id; the client assigns the real one
        try:
            validate_job(plan.request)
        finally:
            plan.request.job = ""
    else:
        validate_job(plan.request)
    return plan


def _check(plan_fn):
    def wrapper(*args, **kwargs) -> JobPlan:
        try:
            return _validated(plan_fn(*args, **kwargs))
        except ProtocolError as exc:
            raise PlanError(exc.message, exc.field) from None
    wrapper.__doc__ = plan_fn.__doc__
    wrapper.__name__ = plan_fn.__name__
    return wrapper


@_check
def plan_generate(doc: Document, s: GenerationSettings, native: int = 0) -> JobPlan:
    w, h = generation_size(doc.width, doc.height, native)
    return JobPlan("generate", _request(s, width=w, height=h), s, doc.rect(), doc.rect())


@_check
def plan_refine(doc: Document, s: GenerationSettings) -> JobPlan:
    if doc.has_selection():
        box = doc.selection_bounds()
        clip = qt_images.gray_array(doc.selection_mask())[box.top():box.bottom() + 1, box.left():box.right() + 1]
        clip = feather(clip, s.mask_blur)
    else:
        box, clip = doc.rect(), None
    init = qt_images.to_wire(doc.composite(box))
    return JobPlan("refine", _request(s, init_image=init, strength=s.strength), s, box, box, clip)


@_check
def plan_inpaint(doc: Document, s: GenerationSettings) -> JobPlan:
    if doc.has_mask():
        mask = doc.mask
    elif doc.has_selection():
        mask = doc.selection_mask()
    else:
        raise PlanError("Nothing to inpaint: paint over the area with the mask brush (M) or select it first.")
    mask_arr = qt_images.gray_array(mask)
    bounds = qt_images.nonzero_bounds(mask_arr)
    request = _request(s, init_image=qt_images.to_wire(doc.composite()), mask=qt_images.mask_to_wire(mask),
                       strength=s.strength, mask_blur=s.mask_blur, grow=s.grow, fill=s.fill, padding=s.padding,
                       whole_picture=s.whole_picture)
    return JobPlan("inpaint", request, s, doc.rect(), inpaint_region(doc, bounds, s), mask=mask_arr)


def inpaint_region(doc: Document, mask_bounds: QRect, s: GenerationSettings) -> QRect:
    """The area the daemon repaints: the mask's box grown by grow, feather and padding ("only masked")."""
    if s.whole_picture:
        return doc.rect()
    margin = max(0, s.grow) + s.mask_blur + s.padding
    return mask_bounds.adjusted(-margin, -margin, margin, margin).intersected(doc.rect())


def fit_aspect(rect: QRect, width: int, height: int, canvas: QRect) -> QRect:
    """``rect`` widened (never narrowed) around its centre to the aspect ``width``:``height``, kept on the canvas.

    The daemon diffuses an "only masked" region widened to its diffusion
    size's aspect; a live preview has exactly that aspect, so widening the
    estimated region the same way puts the preview where the pixels will land.
    """
    if rect.isEmpty() or width <= 0 or height <= 0:
        return QRect(rect)
    aspect = width / height
    x0, y0, x1, y1 = rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1
    w, h = x1 - x0, y1 - y0
    if w / h < aspect:
        x0, x1 = _widen(x0, x1, round(h * aspect), canvas.left(), canvas.right() + 1)
    elif w / h > aspect:
        y0, y1 = _widen(y0, y1, round(w / aspect), canvas.top(), canvas.bottom() + 1)
    return QRect(x0, y0, x1 - x0, y1 - y0)


def _widen(lo: int, hi: int, want: int, start: int, limit: int) -> tuple:
    want = min(max(want, hi - lo), limit - start)
    extra = want - (hi - lo)
    lo -= extra // 2
    hi += extra - extra // 2
    if lo < start:
        hi, lo = hi + (start - lo), start
    if hi > limit:
        lo, hi = lo - (hi - limit), limit
    return max(lo, start), min(hi, limit)


def preview_rect(plan: "JobPlan", preview_width: int, preview_height: int, canvas: QRect) -> QRect:
    """Where to draw a live preview of ``plan``'s job (inpainting regions follow the preview's aspect)."""
    if plan.mode == "inpaint" and plan.preview_rect != canvas:
        return fit_aspect(plan.preview_rect, preview_width, preview_height, canvas)
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
    use_patches = plan.mode == "inpaint" and len(result.patches) == len(result.images)
    for i, image in enumerate(result.images):
        seed = result.seeds[i] if i < len(result.seeds) else -1
        if use_patches:
            patch = result.patches[i]
            pixels = qt_images.from_wire(patch.image)
            rect = QRect(patch.x, patch.y, pixels.width(), pixels.height()).intersected(plan.target)
            pixels = pixels.copy(rect.translated(-patch.x, -patch.y))
        else:
            rect = QRect(plan.target)
            pixels = _fit(qt_images.from_wire(image), rect)
            if plan.clip is not None:
                pixels = qt_images.multiply_alpha(pixels, plan.clip)
        if rect.isEmpty():
            continue
        out.append(Candidate(pixels, rect, seed, plan.mode, plan.settings, result.job,
                             list(result.warnings), dict(result.info)))
    return out

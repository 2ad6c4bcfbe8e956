"""From what the artist set up to one ``Generate`` request: the docker's decision table.

=====================  ==============  =======================================
canvas                 strength        request
=====================  ==============  =======================================
no selection           100 %           text to image at the canvas size
no selection           < 100 %         img2img of the visible canvas
selection              100 %           inpaint: edit with the selection as mask
selection              < 100 %         refine the selection: edit at that strength
=====================  ==============  =======================================

An edit sends the visible canvas inside a window around the selection (the
selection grown by padding, grow and feather: all the context the daemon's
"only masked" crop can use; the whole canvas when "whole picture" is ticked)
plus the same-size mask; the daemon answers with a patch whose offset is
relative to that window.  Reading a window instead of the canvas keeps a 4K
document's inpaint as cheap as a small one's.  Soft selections are sent as
they are: their partial values are the mask.

Pure Python (no Krita, no Qt), so the table above is unit-tested directly.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

from . import wire
from .masks import MaskInfo, Rect, analyse, grow_rect
from .pixels import PixelFormat, to_rgba8


class PlanError(ValueError):
    """Something the artist can fix before anything is sent; ``field`` names the knob."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass
class Settings:
    """The docker's form, persisted between sessions (plain JSON in Krita's settings)."""

    prompt: str = ""
    negative_prompt: str = ""
    model: str = ""                   # "": the daemon's default model
    sampler: str = "euler_a"
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = 0
    random_seed: bool = True
    strength: int = 100               # denoising strength, percent: 100 = generate / inpaint
    batch: int = 1
    concepts: List[Dict[str, Any]] = field(default_factory=list)  # {"name", "weight", "enabled"}
    feather: int = 8                  # mask blur, px
    grow: int = 0                     # px, negative shrinks the selection
    padding: int = 32                 # "only masked" context around the selection, px
    fill: str = "original"            # what the masked area starts from
    whole_picture: bool = False       # diffuse the whole canvas instead of the masked context
    live_preview: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: Optional[str]) -> "Settings":
        """Tolerant: unknown keys are dropped and a value of the wrong type keeps its default."""
        out = cls()
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            return out
        if not isinstance(data, dict):
            return out
        for f in fields(cls):
            if f.name not in data:
                continue
            value, default = data[f.name], getattr(out, f.name)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                value = float(value) if ok else value
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, list):
                ok = isinstance(value, list) and all(
                    isinstance(c, dict) and isinstance(c.get("name"), str) for c in value)
            else:
                ok = isinstance(value, type(default))
            if ok:
                setattr(out, f.name, value)
        return out

    def active_concepts(self) -> List[tuple]:
        return [(c["name"], float(c.get("weight", 1.0))) for c in self.concepts if c.get("enabled", True)]


@dataclass
class CanvasSnapshot:
    """What the job needs from the document, read on Krita's UI thread.

    ``window`` is the part of the canvas that was read (the whole canvas, or
    for an "only masked" edit the selection plus its context); ``pixels`` are
    Krita's raw bytes of the merged visible image inside it, in ``fmt``
    (converted to RGBA8 later, on a worker thread); ``selection`` is the gray8
    selection inside the window and ``mask_info`` describes the whole
    selection in canvas coordinates (None: no selection).
    """

    canvas_width: int
    canvas_height: int
    window: Rect
    pixels: Optional[bytes] = None
    fmt: PixelFormat = field(default_factory=PixelFormat)
    selection: Optional[bytes] = None
    mask_info: Optional[MaskInfo] = None
    name: str = ""
    rgba: Optional[bytes] = None      # set when the host already has RGBA8 (Krita's own conversion)

    def rgba8(self) -> bytes:
        if self.rgba is None:
            if self.pixels is None:
                raise PlanError("the canvas pixels were not read")
            self.rgba = to_rgba8(self.pixels, self.fmt)
            self.pixels = None  # free the raw copy early: 4K float documents are big
        return self.rgba


@dataclass
class ReadPlan:
    """Which pixels to read for a job: decided from the settings and the selection alone."""

    window: Rect
    mask_info: Optional[MaskInfo]
    needs_pixels: bool


MAX_CONTEXT_ASPECT = 2.0  # the daemon widens an "only masked" crop to at most 2:1 (SD-class composition)


def context_margin(settings: Settings) -> int:
    """How far around the selection the daemon can look for an "only masked" edit.

    Its context is the grown, feathered selection plus ``padding``; the
    extra 32 px is slack for rounding the crop to the model's 8-px grid.
    """
    return int(settings.padding) + max(int(settings.grow), 0) + 2 * int(settings.feather) + 32


def _widen(lo: int, hi: int, want: int, limit: int) -> Tuple[int, int]:
    """Grow [lo, hi) to ``want`` around its centre, shifted to stay inside [0, limit)."""
    want = min(max(want, hi - lo), limit)
    extra = want - (hi - lo)
    lo, hi = lo - extra // 2, hi + extra - extra // 2
    if lo < 0:
        lo, hi = 0, hi - lo
    if hi > limit:
        lo, hi = lo - (hi - limit), limit
    return max(lo, 0), min(hi, limit)


def context_window(bounds: Rect, settings: Settings, width: int, height: int) -> Rect:
    """The canvas window sent for an "only masked" edit: every pixel the daemon's crop can use.

    The selection's box plus :func:`context_margin`, then widened like the
    daemon widens its crop (no side shorter than half the other), plus 10 %
    for its final snap to the diffusion size's exact aspect.
    """
    x, y, w, h = grow_rect(bounds, context_margin(settings), width, height)
    x0, y0, x1, y1 = x, y, x + w, y + h
    if w > MAX_CONTEXT_ASPECT * h:
        y0, y1 = _widen(y0, y1, int(w / MAX_CONTEXT_ASPECT) + 1, height)
    elif h > MAX_CONTEXT_ASPECT * w:
        x0, x1 = _widen(x0, x1, int(h / MAX_CONTEXT_ASPECT) + 1, width)
    x0, x1 = _widen(x0, x1, int((x1 - x0) * 1.1) + 1, width)
    y0, y1 = _widen(y0, y1, int((y1 - y0) * 1.1) + 1, height)
    return x0, y0, x1 - x0, y1 - y0


def read_plan(settings: Settings, width: int, height: int, selection: Optional[bytes]) -> ReadPlan:
    """The window of the canvas a job needs (reading a 4K canvas for a 200-px inpaint is waste)."""
    info = analyse(selection, width, height) if selection is not None else None
    if info is not None and info.empty:
        info = None  # an empty selection is no selection: work on the whole canvas
    whole = (0, 0, width, height)
    if info is None:
        return ReadPlan(whole, None, uses_pixels(settings, False))
    window = whole if settings.whole_picture else context_window(info.bounds, settings, width, height)
    return ReadPlan(window, info, True)


@dataclass
class JobPlan:
    """A request plus what placing its result needs to know."""

    kind: str                         # txt2img | img2img | edit
    request: Any                      # wire.Generate
    window: Rect                      # where the request's image sits on the canvas
    canvas_width: int
    canvas_height: int
    mask_info: Optional[MaskInfo] = None
    mask: Optional[bytes] = None      # the window's gray8 mask (edits)
    label: str = ""
    document: Any = None              # the host's handle of the document it came from
    document_format: Any = None       # its PixelFormat: results are converted back into it

    @property
    def selection_bounds(self) -> Optional[Rect]:
        return self.mask_info.bounds if self.mask_info else None


def uses_pixels(settings: Settings, has_selection: bool) -> bool:
    """Whether the job needs the canvas pixels (text to image does not)."""
    return has_selection or settings.strength < 100


def action_label(settings: Settings, has_selection: bool) -> str:
    """The Generate button's words for the current canvas and strength."""
    if has_selection:
        return "Inpaint selection" if settings.strength >= 100 else f"Refine selection {settings.strength} %"
    return "Generate" if settings.strength >= 100 else f"Refine {settings.strength} %"


def plan_job(snapshot: CanvasSnapshot, settings: Settings, limits: Optional[Any] = None) -> JobPlan:
    """Build (and check) the request for ``snapshot``; raises :class:`PlanError` with a sentence."""
    wx, wy, w, h = snapshot.window
    if w <= 0 or h <= 0:
        raise PlanError("the document has no pixels")
    if not 1 <= settings.strength <= 100:
        raise PlanError(f"strength {settings.strength} % must be between 1 and 100 %", "strength")
    mask_info = snapshot.mask_info
    if mask_info is not None and mask_info.empty:
        mask_info = None
    if mask_info is not None and (snapshot.selection is None or len(snapshot.selection) != w * h):
        raise PlanError("the selection was not read for the job's window")
    strength = settings.strength / 100.0
    common = dict(
        prompt=settings.prompt.strip(), negative_prompt=settings.negative_prompt.strip(),
        seed=-1 if settings.random_seed else int(settings.seed), steps=int(settings.steps),
        cfg_scale=float(settings.cfg_scale), batch_size=int(settings.batch), sampler=settings.sampler,
        model=settings.model, concepts=settings.active_concepts(), preview=bool(settings.live_preview),
        priority="front",
    )
    if mask_info is not None:
        kind = "edit"
        request = wire.Generate(
            init_image=wire.Image(w, h, snapshot.rgba8(), "rgba8"), mask=wire.Image(w, h, snapshot.selection, "gray8"),
            strength=strength, mask_blur=int(settings.feather), grow=int(settings.grow),
            fill=settings.fill, padding=int(settings.padding), whole_picture=bool(settings.whole_picture),
            width=w, height=h, **common)
        bx, by, bw, bh = mask_info.bounds
        label = f"{action_label(settings, True)} ({bw}×{bh} at {bx},{by})"
    elif settings.strength < 100:
        kind = "img2img"
        request = wire.Generate(init_image=wire.Image(w, h, snapshot.rgba8(), "rgba8"), strength=strength,
                                width=w, height=h, **common)
        label = f"{action_label(settings, False)} ({w}×{h})"
    else:
        kind = "txt2img"
        request = wire.Generate(width=w, height=h, **common)
        label = f"Generate ({w}×{h})"
    try:
        wire.validate_job(_with_job_id(request), limits)
    except wire.ProtocolError as exc:
        raise PlanError(describe_field_error(exc.message, exc.field or ""), exc.field or "") from None
    finally:
        request.job = ""
    return JobPlan(kind, request, snapshot.window, snapshot.canvas_width, snapshot.canvas_height, mask_info,
                   snapshot.selection if mask_info else None, label)


def _with_job_id(request: Any) -> Any:
    if not request.job:
        request.job = "check"
    return request


FIELD_WORDS = {
    "cfg_scale": "CFG scale", "steps": "steps", "batch_size": "batch count", "seed": "seed",
    "strength": "strength", "mask_blur": "feather", "grow": "grow", "padding": "padding",
    "sampler": "sampler", "width": "canvas size", "height": "canvas size",
    "init_image.width": "canvas size", "init_image.height": "canvas size", "fill": "fill",
    "model": "model", "mask": "selection",
}


def describe_field_error(message: str, field_name: str) -> str:
    """A validation error in the docker's words (``cfg_scale: 40 is outside 0..30`` -> ``CFG scale: ...``)."""
    base = field_name.split("[")[0]
    word = FIELD_WORDS.get(field_name) or FIELD_WORDS.get(base)
    if field_name.startswith("concepts"):
        word = "concept"
    if word and message.startswith(field_name + ":"):
        message = word + message[len(field_name):]
    if field_name in ("width", "height", "init_image.width", "init_image.height"):
        message += " - crop or scale the canvas down, or select a region to inpaint"
    return message[:1].upper() + message[1:]

"""From what the artist set up in the docker to one ``Generate`` request - Krita's glue on the client core.

The job itself is decided by the one planner (:mod:`impasto.protocol.planner`,
the same as GIMP, the canvas and the CLI); Krita adds only how its docker
picks the action, because one strength slider doubles as the action switch:

=====================  ==============  =======================================
canvas                 strength        action
=====================  ==============  =======================================
no selection           100 %           generate (text to image, canvas size)
no selection           < 100 %         refine (img2img of the visible canvas)
selection              100 %           inpaint selection (edit)
selection              < 100 %         refine selection (edit at that strength)
=====================  ==============  =======================================

An edit sends the planner's window around the selection (the whole canvas
when "whole picture" is ticked) plus the same-size selection; the daemon
answers with a patch relative to that window.  Reading a window keeps a 4K
document's inpaint as cheap as a small one's.  Soft selections are sent as
they are: their partial values are the mask.

Pure Python (no Krita, no Qt), so the table above is unit-tested directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ...protocol import errors, planner
from ...protocol.errors import PlanError
from ...protocol.live import window_for_live
from ...protocol.settings import Settings
from .masks import BoxedMask, MaskInfo, Rect, analyse_boxed, boxed, crop_boxed
from .pixels import PixelFormat, to_rgba8

describe_field_error = errors.describe_field


def load_form(text: Optional[str]) -> "Settings":
    """The docker's saved form; a first run starts at 100 % (the slider's Generate / Inpaint end)."""
    s = Settings.from_json(text)
    if not text:
        s.strength = 1.0
    return s


def krita_action(settings: "Settings", has_selection: bool) -> str:
    """The docker's one button: 100 % generates (or inpaints a selection), less refines."""
    if settings.strength >= 1.0:
        return planner.INPAINT if has_selection else planner.GENERATE
    return planner.REFINE


def _rect(box) -> Rect:
    x0, y0, x1, y1 = box
    return x0, y0, x1 - x0, y1 - y0


def _box(rect: Rect):
    x, y, w, h = rect
    return x, y, x + w, y + h


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
    # control layers: (ControlLayer, raw bytes of the layer inside ``window``, its PixelFormat)
    controls: list = field(default_factory=list)

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


def read_plan(settings: "Settings", width: int, height: int,
              selection: "Optional[bytes | BoxedMask]", live: bool = False) -> ReadPlan:
    """The window of the canvas a job needs (the planner's :func:`window_for`).

    ``selection``: the selection read within its box (:class:`~.masks.BoxedMask`,
    what :meth:`KritaHost.read_selection` returns) or a whole-canvas gray8 plane.
    ``live``: a live-painting job, which always refines (:func:`window_for_live`).
    """
    info = analyse_boxed(selection, width, height) if selection is not None else None
    if info is not None and info.empty:
        info = None  # an empty selection is no selection: work on the whole canvas
    has_sel = info is not None
    box = _box(info.bounds) if has_sel else None  # type: ignore[union-attr]
    if live:
        return ReadPlan(_rect(window_for_live((width, height), box, settings)), info, True)
    action = krita_action(settings, has_sel)
    window = _rect(planner.window_for((width, height), box, settings, action))
    return ReadPlan(window, info, planner.needs_pixels(action, has_sel))


def read_canvas(host: Any, doc: Any, settings: "Settings", live: bool = False) -> CanvasSnapshot:
    """Read what a job needs from ``doc`` (on Krita's UI thread): the planned window and the selection in it.

    One path for the docker's Generate and for live painting: the selection is
    read within its box, the pixels only inside the window, and only when the job
    uses them. ``host`` is a :class:`~.krita_host.KritaHost` (or anything with its
    ``canvas_size`` / ``read_selection`` / ``read_pixels``).
    """
    from .krita_host import document_format   # krita_host -> placement -> this module

    width, height = host.canvas_size(doc)
    selection = host.read_selection(doc)
    read = read_plan(settings, width, height, selection, live=live)
    raw, fmt, rgba = None, document_format(doc), None
    if read.needs_pixels:
        raw, fmt, rgba = host.read_pixels(doc, read.window)
    window_sel = (crop_boxed(boxed(selection, width, height), read.window)
                  if read.mask_info is not None else None)
    return CanvasSnapshot(width, height, read.window, raw, fmt, window_sel, read.mask_info, "", rgba)


@dataclass
class JobPlan:
    """A request plus what placing its result needs to know."""

    kind: str                         # txt2img | img2img | edit
    request: Any                      # Generate
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


def uses_pixels(settings: "Settings", has_selection: bool) -> bool:
    """Whether the job needs the canvas pixels (text to image does not)."""
    return planner.needs_pixels(krita_action(settings, has_selection), has_selection)


def action_label(settings: "Settings", has_selection: bool) -> str:
    """The Generate button's words for the current canvas and strength."""
    return planner.action_label(krita_action(settings, has_selection), settings, has_selection)


def plan_job(snapshot: CanvasSnapshot, settings: "Settings", limits: Optional[Any] = None,
             recommendation: Optional[Any] = None) -> JobPlan:
    """The planner's request for ``snapshot``; raises :class:`PlanError` with a sentence."""
    wx, wy, w, h = snapshot.window
    if w <= 0 or h <= 0:
        raise PlanError("the document has no pixels")
    mask_info = snapshot.mask_info
    if mask_info is not None and mask_info.empty:
        mask_info = None
    has_sel = mask_info is not None
    if has_sel and (snapshot.selection is None or len(snapshot.selection) != w * h):
        raise PlanError("the selection was not read for the job's window")
    action = krita_action(settings, has_sel)
    rgba = snapshot.rgba8() if planner.needs_pixels(action, has_sel) else None
    core = planner.plan_job((snapshot.canvas_width, snapshot.canvas_height), settings, action,
                            _box(snapshot.window), rgba, snapshot.selection if has_sel else None,
                            _box(mask_info.bounds) if has_sel else None, limits,  # type: ignore[union-attr]
                            recommendation=recommendation,
                            controls=[(layer, to_rgba8(raw, fmt)) for layer, raw, fmt in snapshot.controls])
    return JobPlan(core.kind, core.request, snapshot.window, snapshot.canvas_width, snapshot.canvas_height,
                   mask_info if core.kind == "edit" else None, snapshot.selection if core.kind == "edit" else None,
                   core.label)

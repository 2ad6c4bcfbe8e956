"""From (document size, selection, settings, action) to one ``Generate`` request - for every front end.

Krita, GIMP, the canvas and the CLI used to decide the job each in their own
way, and the same action made different jobs.  Here is the one decision:

=============  ==============  =================================================
action         selection       request
=============  ==============  =================================================
``generate``   ignored         text to image at the document's size
``refine``     none            img2img of the whole picture at ``strength``
``refine``     yes             edit: the selection is the mask, at ``strength``
``inpaint``    yes             edit: the selection is the mask, at ``strength``
``inpaint``    none            :class:`PlanError` (nothing to inpaint)
=============  ==============  =================================================

"Refine selection" and "Inpaint selection" are the same edit job (the
daemon's mask-blended edit: pixels outside the mask + feather band come back
bit-identical); they differ only in what the artist expects to set (a host
may preset a lower strength for Refine).  Every job is sent with
``priority="front"`` - an artist is waiting for each one.

An edit sends only a *window* of the document (:func:`window_for`, the one
region rule of :mod:`.region`) unless ``whole_picture`` is set; the daemon
answers with patches relative to that window (:func:`place`).  Planning is
split in two so a host reads only the pixels it needs: :func:`window_for`
says which rectangle to read, :func:`plan_job` builds and checks the request
from what was read.  Standard library only (vendored into Krita and GIMP).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from .control import ControlLayer, describe as describe_controls, units_for
from .errors import PlanError, describe_field
from .messages import Generate, Image, Limits, ProtocolError, validate_job
from .region import Box, mask_box, send_window
from .settings import Recommendation, Settings

GENERATE, REFINE, INPAINT = "generate", "refine", "inpaint"
ACTIONS = (GENERATE, REFINE, INPAINT)


@dataclass
class JobPlan:
    """A checked request plus where its pictures sit on the document."""

    action: str
    kind: str                          # txt2img | img2img | edit
    request: Generate                  # job id "" (the client assigns one)
    window: Box                        # document pixels the request's picture covers (x0, y0, x1, y1)
    document: Tuple[int, int]
    selection: Optional[Box] = None    # the selection's box on the document (edits)
    label: str = ""


def needs_pixels(action: str, has_selection: bool) -> bool:
    """Whether the job sends pixels (text to image does not)."""
    return action != GENERATE


def job_kind(action: str, has_selection: bool) -> str:
    if action not in ACTIONS:
        raise PlanError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    if action == GENERATE:
        return "txt2img"
    if has_selection:
        return "edit"
    if action == INPAINT:
        raise PlanError("Nothing to inpaint: select the area to repaint first.", "mask")
    return "img2img"


def window_for(document: Tuple[int, int], selection: Optional[Box], settings: Settings, action: str) -> Box:
    """The document rectangle a job reads and sends: the whole document, or an edit's window."""
    w, h = document
    if w <= 0 or h <= 0:
        raise PlanError("the document has no pixels")
    if job_kind(action, selection is not None) != "edit" or settings.whole_picture:
        return 0, 0, w, h
    return send_window(selection, document, settings.padding, settings.grow, settings.mask_blur)


def action_label(action: str, settings: Settings, has_selection: bool) -> str:
    """The button's words: ``Generate``, ``Refine 60 %``, ``Refine selection 60 %``, ``Inpaint selection``."""
    percent = f"{round(settings.strength * 100)} %"
    if action == GENERATE:
        return "Generate"
    if action == INPAINT:
        return "Inpaint selection"
    return f"Refine selection {percent}" if has_selection else f"Refine {percent}"


def request_fields(settings: Settings, recommendation: Optional[Recommendation] = None) -> dict:
    """The fields every job of ``settings`` shares, whatever the action (unset knobs: the model's)."""
    settings = settings.resolved(recommendation)
    return dict(
        prompt=settings.prompt.strip(), negative_prompt=settings.negative_prompt.strip(), seed=int(settings.seed),
        steps=int(settings.steps), cfg_scale=float(settings.cfg_scale), batch_size=int(settings.batch_size),
        sampler=settings.sampler, model=settings.model.strip(), concepts=settings.active_concepts(),
        preview=bool(settings.preview), priority="front",
    )


def plan_job(document: Tuple[int, int], settings: Settings, action: str, window: Optional[Box] = None,
             rgba: Optional[bytes] = None, mask: Optional[bytes] = None, selection: Optional[Box] = None,
             limits: Optional[Limits] = None, recommendation: Optional[Recommendation] = None,
             controls: Sequence[Tuple[ControlLayer, bytes]] = (), control_model: str = "") -> JobPlan:
    """Build and check the request; raises :class:`PlanError` with a sentence and the field to fix.

    ``window`` is what :func:`window_for` returned (the whole document when
    omitted), ``rgba`` the document's RGBA8 pixels inside it, ``mask`` the
    selection's gray8 values inside it (None: no selection) and
    ``selection`` the selection's box on the document (found from ``mask``
    when omitted).  ``controls`` are the control layers with their RGBA8
    pixels read for the same window (:mod:`.control`); ``control_model``
    names the control model of every layer that names none.
    """
    dw, dh = document
    window = window or (0, 0, dw, dh)
    x0, y0, x1, y1 = window
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        raise PlanError("the document has no pixels")
    if mask is not None:
        if len(mask) != w * h:
            raise PlanError(f"the selection was read for a {len(mask)}-pixel window, not {w}x{h}", "mask")
        if not mask.strip(b"\x00"):
            mask = None      # an empty selection is no selection
    kind = job_kind(action, mask is not None)
    if kind != "txt2img" and (rgba is None or len(rgba) != w * h * 4):
        raise PlanError(f"the picture was not read for the {w}x{h} window", "init_image")
    if kind == "edit" and selection is None:
        bx0, by0, bx1, by1 = mask_box(mask, w, h)  # type: ignore[arg-type,misc]
        selection = (bx0 + x0, by0 + y0, bx1 + x0, by1 + y0)
    common = request_fields(settings, recommendation)
    common["control"] = units_for(controls, window, control_model)
    if kind == "txt2img":
        request = Generate(width=dw, height=dh, **common)
        label = f"Generate ({dw}×{dh})"
    elif kind == "img2img":
        request = Generate(init_image=Image(w, h, rgba, "rgba8"), strength=float(settings.strength),  # type: ignore
                           width=w, height=h, **common)
        label = f"{action_label(action, settings, False)} ({w}×{h})"
    else:
        request = Generate(
            init_image=Image(w, h, rgba, "rgba8"), mask=Image(w, h, mask, "gray8"),  # type: ignore[arg-type]
            strength=float(settings.strength), mask_blur=int(settings.mask_blur), grow=int(settings.grow),
            fill=settings.fill, padding=int(settings.padding), whole_picture=bool(settings.whole_picture),
            colour_match=bool(settings.colour_match), width=w, height=h, **common)
        sx0, sy0, sx1, sy1 = selection  # type: ignore[misc]
        label = f"{action_label(action, settings, True)} ({sx1 - sx0}×{sy1 - sy0} at {sx0},{sy0})"
    label += describe_controls(request.control)
    check(request, limits)
    return JobPlan(action, kind, request, window, (dw, dh), selection if kind == "edit" else None, label)


def check(request: Generate, limits: Optional[Limits] = None) -> None:
    """The protocol's own validation, as a :class:`PlanError` in an artist's words."""
    job, request.job = request.job, request.job or "check"
    try:
        validate_job(request, limits)
    except ProtocolError as exc:
        raise PlanError(describe_field(exc.message, exc.field or ""), exc.field or "") from None
    finally:
        request.job = job


def place(plan: JobPlan, x: int, y: int, width: int, height: int) -> Box:
    """Where a patch at (x, y) of the sent picture lands on the document; refuses one outside it."""
    x0, y0, x1, y1 = plan.window
    if width <= 0 or height <= 0 or x < 0 or y < 0 or x + width > x1 - x0 or y + height > y1 - y0:
        raise ValueError(f"patch {(x, y, width, height)} does not fit the {x1 - x0}x{y1 - y0} picture that was sent")
    return x0 + x, y0 + y, x0 + x + width, y0 + y + height

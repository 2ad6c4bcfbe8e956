"""From the plug-in's fields to typed :class:`Generate` requests - GIMP's glue on the client core.

The dialog, the procedure's arguments (non-interactive runs, scripts) and
the tests all go through :class:`JobFields` (GIMP's argument names and the
concepts typed as ``"mycat:0.8, watercolor"``); what is sent is decided by
the one planner (:mod:`impasto.protocol.planner`), exactly as in Krita, the
canvas and the CLI: text to image, img2img of a drawable, or an "only
masked" edit of a selection inside the planner's window.  Every request is
checked with the protocol's own :func:`validate_job` before it leaves GIMP,
so an artist sees "Steps: 500 is outside 1..200" in the dialog's error, not
a dropped connection.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, fields
from typing import List, Optional, Tuple

from ..protocol import planner
from ..protocol.control import ControlLayer
from ..protocol.errors import PlanError
from ..protocol.messages import Generate, Image, Limits, ProtocolError, check_name
from ..protocol.settings import Recommendation, Settings
from .geometry import Rect

_S = Settings()
MODEL_DEFAULT = "default"           # the sampler choice that means "the model's recommendation"
CONTROL_NONE = "none"               # the control type that means "no control layer"

#: GIMP's integer arguments are 32-bit: seeds the artist types fit there.
MAX_SEED = 2**31 - 1

_CONCEPT_RE = re.compile(r"^\s*(?P<name>[^:]+?)\s*(?::\s*(?P<weight>[-+]?[0-9]*\.?[0-9]+)\s*)?$")


@dataclass
class JobFields:
    """What the artist set: the procedure arguments shared by Generate, Refine and Inpaint."""

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = _S.seed
    # 0 / 0.0 / "default": the model's recommendation (GIMP's arguments always hold a value, so "unset" is one)
    steps: int = 0
    cfg_scale: float = 0.0
    sampler: str = MODEL_DEFAULT
    model: str = _S.model
    concepts: str = ""                  # "mycat:0.8, watercolor" (weight 1 when left out)
    batch_size: int = _S.batch_size
    # Refine / Inpaint
    strength: float = _S.strength       # denoising strength
    mask_blur: int = _S.mask_blur       # feather, px
    grow: int = _S.grow                 # px, negative shrinks
    padding: int = _S.padding           # "only masked" context, px
    fill: str = _S.fill
    whole_picture: bool = _S.whole_picture
    colour_match: bool = _S.colour_match  # inpaint: match the new colours to the surroundings at the seam
    preview: bool = True                # the progress window shows live previews
    # Generate
    width: int = 0                      # 0: the image's width (512 with no image)
    height: int = 0
    # the control layer's settings (the layer itself is a GIMP argument of its own: ``control-layer``)
    control_type: str = CONTROL_NONE    # "none": no control layer, else a CONTROL_TYPES name
    control_strength: float = 1.0
    control_start: float = 0.0
    control_end: float = 1.0
    control_model: str = ""             # "": the installed control model that fits
    # the chosen model's recommendation (from the daemon's model listing), set by the plug-in before planning
    recommendation: Optional[Recommendation] = None

    @classmethod
    def from_config(cls, get) -> "JobFields":
        """Read the fields through ``get(name)`` (a ``Gimp.ProcedureConfig``'s ``get_property``).

        Procedure argument names use dashes (``negative-prompt``); fields a
        procedure does not declare keep their defaults.
        """
        values = {}
        for f in fields(cls):
            if f.name == "recommendation":
                continue
            try:
                value = get(f.name.replace("_", "-"))
            except (TypeError, KeyError, AttributeError):
                continue
            if value is not None:
                values[f.name] = value
        return cls(**values)

    def to_settings(self) -> Settings:
        """The shared :class:`Settings` these fields mean (concepts parsed; :class:`PlanError` if they can't be)."""
        s = Settings(prompt=self.prompt, negative_prompt=self.negative_prompt, seed=int(self.seed),
                     steps=int(self.steps), cfg_scale=float(self.cfg_scale),
                     sampler="" if self.sampler == MODEL_DEFAULT else self.sampler,
                     model=self.model, batch_size=int(self.batch_size), strength=float(self.strength),
                     mask_blur=int(self.mask_blur), grow=int(self.grow), padding=int(self.padding), fill=self.fill,
                     whole_picture=bool(self.whole_picture), preview=bool(self.preview),
                     colour_match=bool(self.colour_match))
        return s.set_concepts(parse_concepts(self.concepts))

    def control(self) -> Optional[ControlLayer]:
        """The dialog's control layer settings (None: "none" chosen)."""
        if not self.control_type or self.control_type == CONTROL_NONE:
            return None
        return ControlLayer(type=self.control_type, strength=float(self.control_strength),
                            start=float(self.control_start), end=float(self.control_end),
                            model=self.control_model.strip())

    def controls(self, pixels: Optional[bytes]) -> list:
        """The planner's ``controls``: the control layer with its RGBA8 pixels read for the job's window."""
        layer = self.control()
        if layer is None:
            return []
        if pixels is None:
            raise PlanError("Control layer: choose the layer whose pixels steer the picture (or set the control "
                            "type to none).", "control")
        return [(layer, pixels)]


def parse_concepts(text: str) -> List[Tuple[str, float]]:
    """``"mycat:0.8, watercolor"`` -> ``[("mycat", 0.8), ("watercolor", 1.0)]``.

    Commas or new lines separate concepts; a missing weight is 1.0 (full
    strength of the LoRA).  Names follow the daemon's naming rules.
    """
    out: List[Tuple[str, float]] = []
    for i, part in enumerate(p for p in re.split(r"[,\n;]", text or "") if p.strip()):
        m = _CONCEPT_RE.match(part)
        if not m:
            raise PlanError(f"Concepts: {part.strip()!r} must look like NAME or NAME:WEIGHT (e.g. mycat:0.8).",
                            "concepts")
        name = m.group("name").strip()
        try:
            check_name(name, f"concepts[{i}]")
        except ProtocolError as exc:
            raise PlanError(exc.message, exc.field or "concepts") from None
        weight = float(m.group("weight")) if m.group("weight") is not None else 1.0
        if any(n == name for n, _ in out):
            raise PlanError(f"Concepts: {name!r} is listed twice.", "concepts")
        out.append((name, weight))
    return out


def format_concepts(concepts: List[Tuple[str, float]]) -> str:
    return ", ".join(name if weight == 1.0 else f"{name}:{weight:g}" for name, weight in concepts)


def _with_id(plan: planner.JobPlan) -> Generate:
    """The planned request with the plug-in's own job id (the rest is the planner's, byte for byte)."""
    plan.request.job = f"gimp-{uuid.uuid4().hex[:16]}"
    return plan.request


def txt2img_request(f: JobFields, width: int, height: int, limits: Optional[Limits] = None,
                    control: Optional[bytes] = None) -> Generate:
    return _with_id(planner.plan_job((int(width), int(height)), f.to_settings(), planner.GENERATE, limits=limits,
                                     recommendation=f.recommendation, controls=f.controls(control)))


def img2img_request(f: JobFields, image: Image, limits: Optional[Limits] = None,
                    control: Optional[bytes] = None) -> Generate:
    return _with_id(planner.plan_job((image.width, image.height), f.to_settings(), planner.REFINE,
                                     rgba=image.data, limits=limits, recommendation=f.recommendation,
                                     controls=f.controls(control)))


def edit_window(f: JobFields, canvas: Rect, selection: Rect, action: str = planner.INPAINT) -> Rect:
    """The part of the image to read and send for an edit of ``selection``: the planner's window."""
    if selection.empty:
        raise PlanError("the selection is empty: select the area to repaint", "mask")
    box = planner.window_for((canvas.width, canvas.height), (selection.x - canvas.x, selection.y - canvas.y,
                                                            selection.right - canvas.x, selection.bottom - canvas.y),
                             f.to_settings(), action)
    return Rect.from_corners(*box).translate(canvas.x, canvas.y)


def edit_request(f: JobFields, image: Image, mask: Image, limits: Optional[Limits] = None,
                 canvas: Optional[Rect] = None, sent: Optional[Rect] = None, action: str = planner.INPAINT,
                 control: Optional[bytes] = None) -> Generate:
    """The planner's edit of the picture ``sent`` (the whole ``image`` by default) of a ``canvas``-sized image."""
    sent = sent or Rect(0, 0, image.width, image.height)
    canvas = canvas or sent
    if (mask.width, mask.height) != (image.width, image.height) or (image.width, image.height) != (
            sent.width, sent.height):
        raise PlanError(f"mask: size {mask.width}x{mask.height} differs from the picture's "
                        f"{image.width}x{image.height}", "mask")
    window = (sent.x - canvas.x, sent.y - canvas.y, sent.right - canvas.x, sent.bottom - canvas.y)
    return _with_id(planner.plan_job((canvas.width, canvas.height), f.to_settings(), action, window, image.data,
                                     mask.data, limits=limits, recommendation=f.recommendation,
                                     controls=f.controls(control)))


def layer_name(action: str, prompt: str, seed: int, limit: int = 40) -> str:
    """``Impasto inpaint: a red fox in snow (seed 1234)`` - the prompt shortened on a word boundary."""
    text = " ".join(prompt.split())
    if len(text) > limit:
        cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
        text = cut + "…"
    return f"Impasto {action}: {text} (seed {seed})"

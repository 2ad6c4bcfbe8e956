"""From the plug-in's fields to typed :class:`Generate` requests - and back to layer names.

The dialog, the procedure's arguments (non-interactive runs, scripts) and
the tests all go through :class:`JobFields` so one set of rules decides what
is sent: text-to-image, img2img of a drawable, or an "only masked" edit of a
selection.  Every request is checked with the protocol's own
:func:`validate_job` before it leaves GIMP, so an artist sees "steps: 500 is
outside 1..200" in the dialog's error, not a dropped connection.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, fields
from typing import List, Optional, Tuple

from ..protocol.messages import (FILL_MODES, SAMPLERS, ErrorCode, Generate, Image, Limits, ProtocolError,
                                 check_name, validate_job)

#: GIMP's integer arguments are 32-bit: seeds the artist types fit there.
MAX_SEED = 2**31 - 1

_CONCEPT_RE = re.compile(r"^\s*(?P<name>[^:]+?)\s*(?::\s*(?P<weight>[-+]?[0-9]*\.?[0-9]+)\s*)?$")


@dataclass
class JobFields:
    """What the artist set: the procedure arguments shared by Generate, Refine and Inpaint."""

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "euler_a"
    model: str = ""
    concepts: str = ""                  # "mycat:0.8, watercolor" (weight 1 when left out)
    batch_size: int = 1
    # Refine / Inpaint
    strength: float = 0.75              # denoising strength
    mask_blur: int = 4                  # feather, px
    grow: int = 0                       # px, negative shrinks
    padding: int = 32                   # "only masked" context, px
    fill: str = "original"
    whole_picture: bool = False
    # Generate
    width: int = 0                      # 0: the image's width (512 with no image)
    height: int = 0

    @classmethod
    def from_config(cls, get) -> "JobFields":
        """Read the fields through ``get(name)`` (a ``Gimp.ProcedureConfig``'s ``get_property``).

        Procedure argument names use dashes (``negative-prompt``); fields a
        procedure does not declare keep their defaults.
        """
        values = {}
        for f in fields(cls):
            try:
                value = get(f.name.replace("_", "-"))
            except (TypeError, KeyError, AttributeError):
                continue
            if value is not None:
                values[f.name] = value
        return cls(**values)


def parse_concepts(text: str) -> List[Tuple[str, float]]:
    """``"mycat:0.8, watercolor"`` -> ``[("mycat", 0.8), ("watercolor", 1.0)]``.

    Commas or new lines separate concepts; a missing weight is 1.0 (full
    strength of the LoRA).  Names follow the daemon's naming rules.
    """
    out: List[Tuple[str, float]] = []
    for i, part in enumerate(p for p in re.split(r"[,\n;]", text or "") if p.strip()):
        m = _CONCEPT_RE.match(part)
        if not m:
            raise ProtocolError(ErrorCode.BAD_FIELD,
                                f"concepts: {part.strip()!r} must look like NAME or NAME:WEIGHT (e.g. mycat:0.8)",
                                "concepts")
        name = m.group("name").strip()
        check_name(name, f"concepts[{i}]")
        weight = float(m.group("weight")) if m.group("weight") is not None else 1.0
        if any(n == name for n, _ in out):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"concepts: {name!r} is listed twice", "concepts")
        out.append((name, weight))
    return out


def format_concepts(concepts: List[Tuple[str, float]]) -> str:
    return ", ".join(name if weight == 1.0 else f"{name}:{weight:g}" for name, weight in concepts)


def _base(f: JobFields) -> Generate:
    if not f.prompt.strip():
        raise ProtocolError(ErrorCode.BAD_FIELD, "prompt: describe what to paint", "prompt")
    if f.sampler not in SAMPLERS:
        raise ProtocolError(ErrorCode.UNKNOWN_SAMPLER, f"sampler: {f.sampler!r} is not one of {', '.join(SAMPLERS)}",
                            "sampler")
    return Generate(
        job=f"gimp-{uuid.uuid4().hex[:16]}",
        prompt=f.prompt.strip(),
        negative_prompt=f.negative_prompt.strip(),
        seed=int(f.seed),
        steps=int(f.steps),
        cfg_scale=float(f.cfg_scale),
        sampler=f.sampler,
        model=f.model.strip(),
        concepts=parse_concepts(f.concepts),
        batch_size=int(f.batch_size),
        preview=True,
    )


def _checked(req: Generate, limits: Optional[Limits]) -> Generate:
    validate_job(req, limits)
    return req


def txt2img_request(f: JobFields, width: int, height: int, limits: Optional[Limits] = None) -> Generate:
    req = _base(f)
    req.width, req.height = int(width), int(height)
    return _checked(req, limits)


def img2img_request(f: JobFields, image: Image, limits: Optional[Limits] = None) -> Generate:
    req = _base(f)
    req.init_image = image
    req.width, req.height = image.width, image.height
    req.strength = float(f.strength)
    return _checked(req, limits)


def edit_request(f: JobFields, image: Image, mask: Image, limits: Optional[Limits] = None) -> Generate:
    """An "only masked" edit (or whole-picture when the artist ticked it)."""
    if f.fill not in FILL_MODES:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"fill: {f.fill!r} is not one of {', '.join(FILL_MODES)}", "fill")
    req = _base(f)
    req.init_image, req.mask = image, mask
    req.width, req.height = image.width, image.height
    req.strength = float(f.strength)
    req.mask_blur = int(f.mask_blur)
    req.grow = int(f.grow)
    req.padding = int(f.padding)
    req.fill = f.fill
    req.whole_picture = bool(f.whole_picture)
    return _checked(req, limits)


def layer_name(action: str, prompt: str, seed: int, limit: int = 40) -> str:
    """``Impasto inpaint: a red fox in snow (seed 1234)`` - the prompt shortened on a word boundary."""
    text = " ".join(prompt.split())
    if len(text) > limit:
        cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
        text = cut + "…"
    return f"Impasto {action}: {text} (seed {seed})"

"""Control layers in the client core: what every front end knows about a control unit, once.

A *control layer* is a layer (Krita, GIMP, canvas) or a picture file (CLI)
whose pixels steer a job through a control model (see
:class:`.messages.ControlUnit`).  The front ends keep a list of
:class:`ControlLayer` (which layer, type, strength, range, model), read each
one's RGBA8 pixels *in the job's window* - the same rectangle
:func:`.planner.window_for` gives for the picture, so for an "only masked"
edit the control image is cut to the region the one region rule
(:mod:`.region`) may diffuse - and hand them to :func:`.planner.plan_job`,
which builds the units with :func:`units_for`.

:func:`parse_spec` reads the CLI's ``TYPE:IMAGE[:STRENGTH[:START:END]]``.
Standard library only (vendored into Krita and GIMP).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import PlanError
from .messages import CONTROL_TYPES, ControlUnit, Image
from .region import Box, crop_bytes


# a control picture whose aspect differs from the document's by more than this factor is refused, a closer
# one resized (the daemon applies the same rule to what arrives)
MAX_ASPECT_RATIO = 1.2


def aspect_close(size: Tuple[int, int], target: Tuple[int, int]) -> bool:
    """Whether a ``size`` picture may be resized onto ``target`` (aspects within :data:`MAX_ASPECT_RATIO`)."""
    ratio = (size[0] / size[1]) / (target[0] / target[1])
    return max(ratio, 1 / ratio) <= MAX_ASPECT_RATIO


def size_refusal(size: Tuple[int, int], target: Tuple[int, int]) -> str:
    return (f"the control image is {size[0]}x{size[1]} but the picture is {target[0]}x{target[1]}; their "
            f"shapes differ too much to resize one onto the other (crop or scale the control image to "
            f"{target[0]}x{target[1]})")


@dataclass
class ControlLayer:
    """One control layer as the artist set it up (``source``: the host's layer id or a file path)."""

    type: str = "scribble"
    source: str = ""
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    model: str = ""                 # "": the installed control model that fits
    enabled: bool = True

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ControlLayer":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def label(self) -> str:
        rng = "" if (self.start, self.end) == (0.0, 1.0) else f" {self.start:g}-{self.end:g}"
        return f"{self.type} {self.strength:g}{rng}"


def parse_spec(text: str) -> ControlLayer:
    """``TYPE:IMAGE[:STRENGTH[:START:END]]`` -> a :class:`ControlLayer` (``source`` = IMAGE).

    IMAGE may itself hold colons (``C:\\drawings\\a.png``): the trailing
    fields are taken from the right when they are numbers.
    """
    kind, sep, rest = text.partition(":")
    if not sep or not rest:
        raise PlanError(f"control {text!r}: write TYPE:IMAGE[:STRENGTH[:START:END]], TYPE one of "
                        f"{', '.join(CONTROL_TYPES)}", "control")
    if kind not in CONTROL_TYPES:
        raise PlanError(f"control type {kind!r} is not one of {', '.join(CONTROL_TYPES)}", "control")
    parts = rest.split(":")
    numbers: List[float] = []
    while len(parts) > 1 and len(numbers) < 3:
        try:
            value = float(parts[-1])
        except ValueError:
            break
        numbers.insert(0, value)
        parts.pop()
    if len(numbers) == 2:
        raise PlanError(f"control {text!r}: give STRENGTH, or STRENGTH:START:END (not two numbers)", "control")
    layer = ControlLayer(type=kind, source=":".join(parts))
    if numbers:
        layer.strength = numbers[0]
    if len(numbers) == 3:
        layer.start, layer.end = numbers[1], numbers[2]
    return layer


def window_pixels(rgba: bytes, size: Tuple[int, int], window: Box) -> bytes:
    """A control picture of the whole document (RGBA8, ``size``) cut to the job's window."""
    w, h = size
    if len(rgba) != w * h * 4:
        raise PlanError(f"the control picture holds {len(rgba)} bytes, not {w}x{h} RGBA", "control")
    if window == (0, 0, w, h):
        return bytes(rgba)
    return crop_bytes(rgba, w, window, 4)


def units_for(controls: Sequence[Tuple[ControlLayer, bytes]], window: Box,
              default_model: str = "") -> List[ControlUnit]:
    """The request's units: each enabled layer with its RGBA8 pixels read for ``window``."""
    x0, y0, x1, y1 = window
    w, h = x1 - x0, y1 - y0
    units: List[ControlUnit] = []
    for i, (layer, rgba) in enumerate(controls):
        if not layer.enabled:
            continue
        if rgba is None or len(rgba) != w * h * 4:
            got = 0 if rgba is None else len(rgba)
            raise PlanError(f"control layer {i + 1} ({layer.type}) was read as {got} bytes, not for the "
                            f"{w}x{h} window", f"control[{len(units)}].image")
        units.append(ControlUnit(type=layer.type, image=Image(w, h, bytes(rgba), "rgba8"),
                                 model=(layer.model or default_model).strip(), strength=float(layer.strength),
                                 start=float(layer.start), end=float(layer.end)))
    return units


def describe(units: Optional[Sequence[ControlUnit]]) -> str:
    """A short note for a job's label: ``+ scribble 0.8, canny 1``."""
    if not units:
        return ""
    return " + " + ", ".join(f"{u.type} {u.strength:g}" for u in units)


def parameters_extra(units: Sequence[ControlUnit]) -> Dict[str, str]:
    """The ``ControlNet N`` entries A1111 writes into a saved picture's parameters, one per unit that acted.

    Civitai and A1111 readers show them, so a picture says which control
    steered it (type, model, weight, range).  The control images are not in
    the text: ``--from`` re-runs the prompt and settings, not the drawing.
    A unit at strength 0 is left out, as it was left out of the job.
    """
    acting = [u for u in units if u.strength]
    return {f"ControlNet {i}": (f"Module: {u.type}, Model: {u.model or 'auto'}, Weight: {u.strength:g}, "
                                f"Guidance Start: {u.start:g}, Guidance End: {u.end:g}")
            for i, u in enumerate(acting)}

"""The GIMP dialog's control layer: a layer chosen in the dialog steers the picture as a control unit.

Every Impasto procedure (Generate, Refine, Inpaint Selection) takes a
``control-layer`` argument (GIMP's own layer chooser in the dialog; none by
default) and its settings (``control-type`` - "none" or a preprocessor such as
scribble, line art, canny -, strength, start / end of the schedule, control
model).  The layer's RGBA pixels are read in the job's window - the same
rectangle the picture is read in, so an inpaint sends only the region around
the selection - and :meth:`.jobs.JobFields.controls` hands them to the one
planner.  GIMP glue only: the job is planned by the client core.
"""
from __future__ import annotations

from typing import Optional

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import GObject, Gimp  # noqa: E402

from ..protocol.messages import CONTROL_TYPES  # noqa: E402
from . import gimp_pixels as gp  # noqa: E402
from .geometry import Rect  # noqa: E402
from .jobs import CONTROL_NONE  # noqa: E402

RW = GObject.ParamFlags.READWRITE
FIELDS = ["control-layer", "control-type", "control-strength", "control-start", "control-end", "control-model"]
LABELS = {"none": "None", "raw": "Raw (the layer is the map)", "canny": "Canny edges", "scribble": "Scribble",
          "softedge": "Soft edges", "lineart": "Line art", "depth": "Depth (needs estimator weights)",
          "pose": "Pose (needs estimator weights)"}


def add_arguments(proc, choice) -> None:
    """The control-layer arguments (``choice`` builds a ``Gimp.Choice`` from values and labels)."""
    proc.add_layer_argument("control-layer", "Control _layer", "A layer whose pixels steer the composition "
                            "(a sketch, line art or a map; it may be hidden)", True, RW)
    proc.add_choice_argument("control-type", "Control t_ype", "What the daemon makes of the control layer first",
                             choice((CONTROL_NONE,) + tuple(CONTROL_TYPES), LABELS), CONTROL_NONE, RW)
    proc.add_double_argument("control-strength", "Control st_rength", "0 leaves the control layer out", 0.0, 2.0,
                             1.0, RW)
    proc.add_double_argument("control-start", "Control start", "Fraction of the steps before it acts", 0.0, 1.0,
                             0.0, RW)
    proc.add_double_argument("control-end", "Control end", "Fraction of the steps after which it stops", 0.0, 1.0,
                             1.0, RW)
    proc.add_string_argument("control-model", "Control mo_del", "Control model name (empty: the installed one "
                             "that fits)", "", RW)


def read(config, region: Rect) -> Optional[bytes]:
    """The chosen control layer's RGBA8 pixels in ``region`` (image coordinates), or None when none is chosen."""
    try:
        layer = config.get_property("control-layer")
    except (TypeError, AttributeError):
        return None
    if layer is None:
        return None
    return gp.read_rgba(layer, region)

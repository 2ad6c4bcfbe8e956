"""``--control TYPE:IMAGE[:STRENGTH[:START:END]]`` and ``--control-model NAME`` on generate, img2img and edit.

The options are parsed by the client core (:func:`impasto.protocol.control.parse_spec`);
here each picture file is read, brought to the document's size (resized with
a note when its shape is close, refused when not: the daemon's own rule) and
cut to the job's window, so an "only masked" edit sends only the region the
picture's window covers.  No torch: the CLI is a protocol client.
"""
from __future__ import annotations

import sys
from typing import List, Optional, Tuple

from impasto.protocol.control import ControlLayer, aspect_close, parse_spec, size_refusal, window_pixels
from impasto.protocol.errors import PlanError


def add_options(p) -> None:
    p.add_argument("--control", action="append", default=None, metavar="TYPE:IMAGE[:STRENGTH[:START:END]]",
                   help="a control layer (repeatable): TYPE is raw, canny, scribble, softedge, lineart, depth or "
                        "pose (the preprocessor the daemon runs on IMAGE; raw = IMAGE already is the map), "
                        "STRENGTH 0..2 (default 1), START:END the part of the schedule it acts on (default 0:1)")
    p.add_argument("--control-model", default="", metavar="NAME",
                   help="the control model for --control layers (see `impasto models`; default: the one "
                        "installed that fits the model and the type)")


def _read(path: str, document: Tuple[int, int]) -> bytes:
    from PIL import Image

    from impasto.backend.cli_edit import _open, _to_8bit

    img = _to_8bit(_open(path)).convert("RGBA")
    if img.size != tuple(document):
        if not aspect_close(img.size, document):
            raise PlanError(f"{path}: {size_refusal(img.size, document)}", "control")
        print(f"note: control image {path} is {img.width}x{img.height}: resized to {document[0]}x{document[1]}",
              file=sys.stderr)
        img = img.resize(tuple(document), Image.BILINEAR)
    return img.tobytes()


def controls_for(args, document: Tuple[int, int], window: Optional[Tuple[int, int, int, int]] = None
                 ) -> List[Tuple[ControlLayer, bytes]]:
    """The command's control layers with their pixels read for ``window`` (the whole document when None)."""
    specs = getattr(args, "control", None) or []
    window = window or (0, 0, document[0], document[1])
    out = []
    for spec in specs:
        layer = parse_spec(spec)
        out.append((layer, window_pixels(_read(layer.source, document), document, window)))
    return out

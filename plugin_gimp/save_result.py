"""A result layer's A1111 ``parameters`` and the PNG "Save Result" writes (pure: no GIMP here).

GIMP's own PNG export writes only a ``Comment`` chunk, which no A1111
reader looks at, so an Impasto picture exported from GIMP lost its prompt,
seed and settings.  The plug-in therefore keeps each result layer's
parameters with the layer (a persistent parasite, so they survive an XCF
save) and *Filters > Impasto > Save Result* writes a PNG carrying them in
the ``parameters`` text chunk that A1111, Civitai and ``impasto generate
--from`` read.  GIMP's Python has no Pillow, so the PNG is encoded here
with the standard library (zlib); the text goes through the protocol's one
writer (:mod:`..protocol.parameters`).
"""
from __future__ import annotations

import os
import struct
import zlib
from typing import Any, Callable, Tuple

from ..protocol.parameters import PNG_SIGNATURE, format_parameters, png_chunk, png_with_text
from ..protocol.settings import Settings

PARASITE = "impasto-parameters"      # the layer parasite holding a result's A1111 text


class SaveError(ValueError):
    """Why a result cannot be saved, in an artist's words."""


def layer_parameters(request: Any, result: Any, seed: int, size: Tuple[int, int]) -> str:
    """The A1111 text of one picture of ``result`` (seed ``seed``), saved at ``size`` (the image's size)."""
    settings = Settings.from_request(request, seed)
    model = request.model or str((getattr(result, "info", None) or {}).get("model", ""))
    denoising = float(request.strength) if request.init_image is not None else None
    return format_parameters(settings, seed, size, model, denoising)


def tagger(request: Any, result: Any, size: Tuple[int, int]) -> Callable[[Any], str]:
    """``plan -> parameters text`` for the layers of one result (each plan knows its seed)."""
    return lambda plan: layer_parameters(request, result, int(plan.seed), size)


def png_path(path: str) -> str:
    """The file to write: ``.png`` added when there is no extension; another extension is refused."""
    if not path:
        raise SaveError("choose a file to save the result to")
    root, ext = os.path.splitext(path)
    if not ext:
        return path + ".png"
    if ext.lower() != ".png":
        raise SaveError(f"Save Result writes PNG (the format A1111 readers take the parameters from): name the file "
                        f"{os.path.basename(root)}.png, not {os.path.basename(path)}")
    return path


def png_bytes(width: int, height: int, rgba: bytes, text: str = "") -> bytes:
    """A PNG of RGBA8 pixels (RGB when fully opaque) carrying ``text`` as its ``parameters`` chunk."""
    if width <= 0 or height <= 0 or len(rgba) != width * height * 4:
        raise SaveError(f"{len(rgba)} bytes are not a {width}x{height} RGBA picture")
    opaque = all(a == 255 for a in rgba[3::4])
    if opaque:
        rgb = bytearray(width * height * 3)
        rgb[0::3], rgb[1::3], rgb[2::3] = rgba[0::4], rgba[1::4], rgba[2::4]
        stride, data, colour = width * 3, bytes(rgb), 2
    else:
        stride, data, colour = width * 4, bytes(rgba), 6
    rows = b"".join(b"\x00" + data[y * stride:(y + 1) * stride] for y in range(height))
    png = (PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
           + png_chunk(b"IDAT", zlib.compress(rows, 6)) + png_chunk(b"IEND", b""))
    return png_with_text(png, text) if text else png

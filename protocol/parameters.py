"""A picture's settings in the text AUTOMATIC1111 writes, so every A1111-format reader shows them.

Civitai, A1111's "PNG Info" tab, ComfyUI's and InvokeAI's importers and
the exif viewers artists use all read one text: the ``parameters`` PNG
text chunk (JPEG/WebP: the EXIF UserComment) laid out as::

    a red circle on a blue background <lora:mycat:0.8>
    Negative prompt: blurry
    Steps: 20, Sampler: DDIM, CFG scale: 5, Seed: 42, Size: 512x512, Model: starter, Denoising strength: 0.75

LoRAs travel as ``<lora:NAME:WEIGHT>`` tags in the prompt, as A1111 writes
them.  This module is the one writer and parser (every client saves through
it, ``impasto generate --from`` reads through it), plus a standard-library
PNG chunk writer/reader for the plug-ins, whose Python has no Pillow.
Standard library only (vendored into Krita and GIMP).
"""
from __future__ import annotations

import json
import re
import struct
import zlib
from typing import Dict, List, Optional, Tuple

from .settings import SAMPLER_LABELS_SHORT, Settings

KEYWORD = "parameters"

# protocol sampler name -> A1111's label (A1111 >= 1.9 splits "Karras" into "Schedule type")
SAMPLER_LABELS = SAMPLER_LABELS_SHORT
_FROM_LABEL = {v.lower(): k for k, v in SAMPLER_LABELS.items()}

_LORA = re.compile(r"\s*<lora:([^:>]+):(-?[0-9]*\.?[0-9]+)>")
# A1111's own pattern: "Key: value" where a value is a JSON string or runs to the next comma
_PAIR = re.compile(r'\s*(\w[\w \-/+]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def _num(value: float) -> str:
    return f"{value:g}"


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if ("," in value or ":" in value or '"' in value) else value


def format_parameters(settings: Settings, seed: int, size: Tuple[int, int], model: str = "",
                      denoising: Optional[float] = None, extra: Optional[Dict[str, str]] = None) -> str:
    """The A1111 text for one picture (``seed``: the seed the daemon used, never -1)."""
    prompt = settings.prompt.strip()
    loras = "".join(f" <lora:{n}:{_num(w)}>" for n, w in settings.active_concepts())
    lines = [(prompt + loras).strip()]
    if settings.negative_prompt.strip():
        lines.append("Negative prompt: " + settings.negative_prompt.strip())
    pairs = [("Steps", str(int(settings.steps))),
             ("Sampler", SAMPLER_LABELS.get(settings.sampler, settings.sampler)),
             ("CFG scale", _num(float(settings.cfg_scale))), ("Seed", str(int(seed))),
             ("Size", f"{int(size[0])}x{int(size[1])}")]
    if model:
        pairs.append(("Model", model))
    if denoising is not None:
        pairs.append(("Denoising strength", _num(float(denoising))))
    pairs.extend((extra or {}).items())
    lines.append(", ".join(f"{k}: {_quote(str(v))}" for k, v in pairs))
    return "\n".join(lines)


class Parameters:
    """What :func:`parse_parameters` read: settings plus the size, model and raw key/values."""

    def __init__(self, settings: Settings, size: Optional[Tuple[int, int]], values: Dict[str, str]):
        self.settings, self.size, self.values = settings, size, values

    @property
    def denoising(self) -> Optional[float]:
        return _float(self.values.get("Denoising strength"))


def _float(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def parse_parameters(text: str) -> Parameters:
    """A1111 text -> :class:`Parameters`; unknown keys stay in ``values``, unreadable ones keep defaults."""
    lines = text.strip().split("\n")
    last = lines[-1] if lines else ""
    pairs = _PAIR.findall(last)
    if len(pairs) >= 3:          # A1111's test: a settings line has at least three pairs
        lines = lines[:-1]
    else:
        pairs = []
    prompt_lines: List[str] = []
    negative_lines: List[str] = []
    target = prompt_lines
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:"):].lstrip()
        target.append(line)
    prompt = "\n".join(prompt_lines)
    concepts = [(m.group(1), float(m.group(2))) for m in _LORA.finditer(prompt)]
    values: Dict[str, str] = {}
    for key, value in pairs:
        value = value.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            try:
                value = json.loads(value)
            except ValueError:
                pass
        values[key.strip()] = value
    s = Settings(prompt=_LORA.sub("", prompt).strip(), negative_prompt="\n".join(negative_lines).strip())
    s.set_concepts(concepts)
    steps = values.get("Steps", "")
    if steps.isdigit():
        s.steps = int(steps)
    cfg = _float(values.get("CFG scale"))
    if cfg is not None:
        s.cfg_scale = cfg
    seed = values.get("Seed", "")
    if re.fullmatch(r"-?\d+", seed):
        s.seed = int(seed)
    sampler = values.get("Sampler", "").strip()
    if values.get("Schedule type", "").lower() == "karras" and not sampler.lower().endswith("karras"):
        sampler += " Karras"
    if sampler.lower() in _FROM_LABEL:
        s.sampler = _FROM_LABEL[sampler.lower()]
    if values.get("Model"):
        s.model = values["Model"]
    strength = _float(values.get("Denoising strength"))
    if strength is not None:
        s.strength = strength
    size = None
    m = re.fullmatch(r"(\d+)x(\d+)", values.get("Size", ""))
    if m:
        size = (int(m.group(1)), int(m.group(2)))
    return Parameters(s, size, values)


# --------------------------------------------------------------------------- PNG text chunks (stdlib)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC (also the GIMP plug-in's stdlib PNG encoder's)."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)



def text_chunk(text: str, keyword: str = KEYWORD) -> bytes:
    """A tEXt chunk when the text is Latin-1 (what A1111/Pillow write), else an iTXt (UTF-8)."""
    try:
        return png_chunk(b"tEXt", keyword.encode("latin-1") + b"\x00" + text.encode("latin-1"))
    except UnicodeEncodeError:
        return png_chunk(b"iTXt", keyword.encode("latin-1") + b"\x00\x00\x00\x00\x00" + text.encode("utf-8"))


def _chunks(png: bytes):
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind = png[pos + 4:pos + 8]
        if pos + 12 + length > len(png):
            raise ValueError("truncated PNG chunk")
        yield pos, kind, png[pos + 8:pos + 8 + length], pos + 12 + length
        pos += 12 + length


def png_with_text(png: bytes, text: str, keyword: str = KEYWORD) -> bytes:
    """``png`` with its ``keyword`` text chunks replaced by one holding ``text`` (placed before IDAT)."""
    out, placed = [PNG_SIGNATURE], False
    for _start, kind, data, _end in _chunks(png):
        if kind in (b"tEXt", b"iTXt", b"zTXt") and data.split(b"\x00", 1)[0] == keyword.encode("latin-1"):
            continue
        if kind == b"IDAT" and not placed:
            out.append(text_chunk(text, keyword))
            placed = True
        out.append(png_chunk(kind, data))
    if not placed:
        raise ValueError("PNG without image data")
    return b"".join(out)


def png_text(png: bytes, keyword: str = KEYWORD) -> Optional[str]:
    """The ``keyword`` text of a PNG (tEXt, zTXt or iTXt), or None."""
    for _start, kind, data, _end in _chunks(png):
        key, _, rest = data.partition(b"\x00")
        if key != keyword.encode("latin-1"):
            continue
        if kind == b"tEXt":
            return rest.decode("latin-1")
        if kind == b"zTXt":
            return zlib.decompress(rest[1:]).decode("latin-1")
        if kind == b"iTXt":
            compressed, _method = rest[0], rest[1]
            _lang, _, rest = rest[2:].partition(b"\x00")
            _tkey, _, body = rest.partition(b"\x00")
            return (zlib.decompress(body) if compressed else body).decode("utf-8")
        if kind == b"IEND":
            break
    return None


# EXIF UserComment (JPEG / WebP): an 8-byte charset marker then the text, as A1111 (piexif) writes it
def user_comment(text: str) -> bytes:
    return b"UNICODE\x00" + text.encode("utf-16-be")


def read_user_comment(raw: bytes) -> str:
    head, body = raw[:8], raw[8:]
    if head == b"UNICODE\x00":
        # piexif writes big-endian; some writers use little-endian with a BOM or none
        if body[:2] == b"\xff\xfe":
            return body[2:].decode("utf-16-le", "replace")
        if len(body) >= 2 and body[0] != 0 and body[1] == 0:
            return body.decode("utf-16-le", "replace")
        return body.decode("utf-16-be", "replace")
    return body.decode("utf-8", "replace") if head in (b"ASCII\x00\x00\x00", b"\x00" * 8) else raw.decode(
        "utf-8", "replace")

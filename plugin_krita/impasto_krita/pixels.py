"""Pixel layouts: Krita's raw bytes <-> the wire's straight-alpha RGBA 8-bit sRGB.

Pure Python on purpose: Krita's Python on Windows and macOS has no numpy or
PIL, so every conversion here is built from C-speed ``bytes`` operations -
extended slices to split and interleave channels, ``bytes.translate`` with a
256-entry table for any 8-bit -> 8-bit (or 8-bit -> one byte of a wider
sample) mapping, and ``map(table.__getitem__, array('H', ...))`` with a
65536-entry table where a 16-bit sample has to be read.

What Krita hands out (``Document.pixelData`` / ``Node.pixelData``):

* integer depths (U8, U16) store channels as B, G, R, A;
* float depths (F16, F32) store R, G, B, A;
* greyscale stores gray, alpha;
* samples are native-endian, alpha is straight (not premultiplied);
* the profile decides the tone curve: Krita's default for U16 and float
  documents is ``sRGB-elle-V2-g10.icc`` - *linear* light - so those samples
  are encoded to the sRGB curve on the way out and decoded on the way back.

The wire (and the model) wants RGBA 8-bit sRGB.  U16 -> 8 bit keeps the high
byte (exact for any value that came from 8 bit, 257*k); linear and float
samples go through tables that round to nearest.  F32 is read through its top
16 bits (sign, exponent, 7 mantissa bits: the bfloat16 of the value), looked
up at the middle of that bucket, which is within half an 8-bit level.
"""
from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Tuple

DEPTH_BYTES: Dict[str, int] = {"U8": 1, "U16": 2, "F16": 2, "F32": 4}
MODEL_CHANNELS: Dict[str, int] = {"RGBA": 4, "GRAYA": 2}
LITTLE = sys.byteorder == "little"

# Rec. 709 / sRGB luminance weights: RGB results written into a greyscale document.
LUMA = (0.2126, 0.7152, 0.0722)


class UnsupportedFormat(ValueError):
    """A colour model this module does not convert itself (CMYK, Lab, XYZ, YCbCr).

    The Krita host converts those through Krita's own colour management instead.
    """


def is_linear_profile(profile: str) -> bool:
    """True for linear-light ICC profiles (Krita's ``-g10`` family, scRGB, "linear" in the name)."""
    name = (profile or "").lower()
    return "g10" in name or "linear" in name or "scrgb" in name or "gamma 1.0" in name


@dataclass(frozen=True)
class PixelFormat:
    """A Krita colour space as far as raw bytes go: model, depth and whether it is linear light."""

    model: str = "RGBA"
    depth: str = "U8"
    linear: bool = False

    @classmethod
    def of(cls, model: str, depth: str, profile: str = "") -> "PixelFormat":
        return cls(model, depth, is_linear_profile(profile))

    @property
    def supported(self) -> bool:
        return self.model in MODEL_CHANNELS and self.depth in DEPTH_BYTES

    @property
    def channels(self) -> int:
        return MODEL_CHANNELS[self.model]

    @property
    def sample_bytes(self) -> int:
        return DEPTH_BYTES[self.depth]

    @property
    def pixel_bytes(self) -> int:
        return self.channels * self.sample_bytes

    def check(self) -> None:
        if not self.supported:
            raise UnsupportedFormat(f"{self.model}/{self.depth} is converted by Krita, not in Python")

    def source_channel(self, rgba_index: int) -> int:
        """Where wire channel ``rgba_index`` (0=R .. 3=A) sits inside a Krita pixel."""
        if self.model == "GRAYA":
            return 1 if rgba_index == 3 else 0
        if self.depth in ("U8", "U16"):
            return (2, 1, 0, 3)[rgba_index]  # B G R A in memory
        return rgba_index  # float: R G B A in memory


RGBA8 = PixelFormat("RGBA", "U8", False)


# --------------------------------------------------------------------------- tone curves


def srgb_encode(linear: float) -> float:
    """Linear light 0..1 -> sRGB-encoded 0..1 (IEC 61966-2-1)."""
    if linear <= 0.0:
        return 0.0
    if linear >= 1.0:
        return 1.0
    if linear <= 0.0031308:
        return linear * 12.92
    return 1.055 * linear ** (1 / 2.4) - 0.055


def srgb_decode(encoded: float) -> float:
    """sRGB-encoded 0..1 -> linear light 0..1."""
    if encoded <= 0.04045:
        return encoded / 12.92
    return ((encoded + 0.055) / 1.055) ** 2.4


def _to_byte(value: float) -> int:
    if not value > 0.0:  # also NaN
        return 0
    if value >= 1.0:  # also +inf (HDR highlights clip)
        return 255
    return int(value * 255.0 + 0.5)


# --------------------------------------------------------------------------- tables (built once)


@lru_cache(maxsize=None)
def _u8_table(linear: bool, encode: bool) -> bytes:
    """8-bit -> 8-bit: linear <-> sRGB for 8-bit linear documents (identity otherwise)."""
    if not linear:
        return bytes(range(256))
    fn = srgb_encode if encode else srgb_decode
    return bytes(_to_byte(fn(v / 255.0)) for v in range(256))


@lru_cache(maxsize=None)
def _read16_table(depth: str, tone: bool) -> bytes:
    """65536-entry table: a 16-bit key (U16 value, F16 bits, top half of F32) -> 8-bit sRGB.

    ``tone`` applies the linear -> sRGB curve (colour channels of linear
    documents); alpha and sRGB-curve samples are only scaled.
    """
    out = bytearray(65536)
    if depth == "U16":
        values = [k / 65535.0 for k in range(65536)]
    elif depth == "F16":  # the key is the half float's bit pattern
        values = struct.unpack("<65536e", struct.pack("<65536H", *range(65536)))
    elif depth == "F32":  # the key is the float's top 16 bits: look up the middle of its bucket
        values = struct.unpack("<65536f", struct.pack("<65536I", *((k << 16) | 0x8000 for k in range(65536))))
    else:
        raise UnsupportedFormat(depth)
    for k, v in enumerate(values):
        out[k] = _to_byte(srgb_encode(v) if tone else v)
    return bytes(out)


@lru_cache(maxsize=None)
def _write_tables(depth: str, tone: bool) -> Tuple[bytes, ...]:
    """8-bit sRGB -> one ``translate`` table per byte of the target sample (memory order)."""
    samples: List[bytes] = []
    for v in range(256):
        x = v / 255.0
        if tone:
            x = srgb_decode(x)
        if depth == "U16":
            samples.append(struct.pack("=H", int(x * 65535.0 + 0.5)))
        elif depth == "F16":
            samples.append(struct.pack("=e", x))
        elif depth == "F32":
            samples.append(struct.pack("=f", x))
        else:
            raise UnsupportedFormat(depth)
    width = len(samples[0])
    return tuple(bytes(s[k] for s in samples) for k in range(width))


# --------------------------------------------------------------------------- channel access


def _channel(data: bytes, fmt: PixelFormat, index: int) -> List[bytes]:
    """The raw bytes of one channel, split by byte position inside the sample."""
    step = fmt.pixel_bytes
    start = index * fmt.sample_bytes
    return [data[start + k::step] for k in range(fmt.sample_bytes)]


def _channel_to_u8(data: bytes, fmt: PixelFormat, index: int, is_alpha: bool) -> bytes:
    tone = fmt.linear and not is_alpha
    parts = _channel(data, fmt, index)
    if fmt.depth == "U8":
        return parts[0] if not tone else parts[0].translate(_u8_table(True, True))
    if fmt.depth == "U16" and not tone:
        return parts[1] if LITTLE else parts[0]  # the high byte: exact for 257*k
    if fmt.depth == "F32":
        parts = parts[2:] if LITTLE else parts[:2]
    key = bytearray(len(parts[0]) * 2)
    key[0::2], key[1::2] = parts[0], parts[1]
    keys = array("H")
    keys.frombytes(bytes(key))
    table = _read16_table(fmt.depth, tone)
    return bytes(map(table.__getitem__, keys))


# --------------------------------------------------------------------------- public conversions


def swap_red_blue(data: bytes) -> bytes:
    """BGRA <-> RGBA for 4-byte pixels (the same swap both ways)."""
    out = bytearray(data)
    out[0::4] = data[2::4]
    out[2::4] = data[0::4]
    return bytes(out)


# Conversions run on a worker thread, but a single C-level loop over a 4K canvas would hold the
# GIL for seconds and stall Krita's Python-backed widgets; converting in slices of this many
# pixels hands the GIL back between slices (the eval loop switches threads every few ms).
CHUNK_PIXELS = 1 << 18


def _chunked(fn, data: bytes, in_bytes: int, chunk_pixels: int) -> bytes:
    step = in_bytes * chunk_pixels
    if len(data) <= step:
        return fn(data)
    return b"".join(fn(data[i:i + step]) for i in range(0, len(data), step))


def to_rgba8(data: bytes, fmt: PixelFormat, chunk_pixels: int = CHUNK_PIXELS) -> bytes:
    """Krita pixels in ``fmt`` -> straight-alpha RGBA 8-bit sRGB."""
    fmt.check()
    if len(data) % fmt.pixel_bytes:
        raise ValueError(f"{len(data)} bytes is not a whole number of {fmt.model}/{fmt.depth} pixels")
    return _chunked(lambda part: _to_rgba8(part, fmt), bytes(data), fmt.pixel_bytes, chunk_pixels)


def _to_rgba8(data: bytes, fmt: PixelFormat) -> bytes:
    if fmt == RGBA8:
        return swap_red_blue(data)
    count = len(data) // fmt.pixel_bytes
    out = bytearray(count * 4)
    if fmt.model == "GRAYA":
        gray = _channel_to_u8(data, fmt, 0, False)
        out[0::4] = out[1::4] = out[2::4] = gray
        out[3::4] = _channel_to_u8(data, fmt, 1, True)
        return bytes(out)
    for c in range(4):
        out[c::4] = _channel_to_u8(data, fmt, fmt.source_channel(c), c == 3)
    return bytes(out)


@lru_cache(maxsize=None)
def _luma_tables() -> Tuple[List[int], List[int], List[int], bytes]:
    lin = [srgb_decode(v / 255.0) for v in range(256)]
    scale = 1 << 24
    weights = [[int(w * x * scale) for x in lin] for w in LUMA]
    # linear luminance (top 16 of 24 bits) -> 8-bit sRGB
    back = bytes(_to_byte(srgb_encode(i / 65536.0)) for i in range(65537))
    return weights[0], weights[1], weights[2], back


def luminance8(rgba: bytes) -> bytes:
    """Gray (sRGB curve) of RGBA8 pixels, weighted in linear light like a colour-managed conversion."""
    from operator import add

    tr, tg, tb, back = _luma_tables()
    total = map(add, map(add, map(tr.__getitem__, rgba[0::4]), map(tg.__getitem__, rgba[1::4])),
                map(tb.__getitem__, rgba[2::4]))
    return bytes(map(back.__getitem__, map((8).__rrshift__, total)))


def from_rgba8(rgba: bytes, fmt: PixelFormat, chunk_pixels: int = CHUNK_PIXELS) -> bytes:
    """Straight-alpha RGBA 8-bit sRGB -> Krita pixels in ``fmt`` (what ``setPixelData`` wants)."""
    fmt.check()
    if len(rgba) % 4:
        raise ValueError(f"{len(rgba)} bytes is not a whole number of RGBA pixels")
    return _chunked(lambda part: _from_rgba8(part, fmt), bytes(rgba), 4, chunk_pixels)


def _from_rgba8(rgba: bytes, fmt: PixelFormat) -> bytes:
    if fmt == RGBA8:
        return swap_red_blue(rgba)
    count = len(rgba) // 4
    if fmt.model == "GRAYA":
        sources = {0: luminance8(rgba), 1: rgba[3::4]}
    else:
        sources = {fmt.source_channel(c): rgba[c::4] for c in range(4)}
    out = bytearray(count * fmt.pixel_bytes)
    step = fmt.pixel_bytes
    for index, src in sources.items():
        is_alpha = index == fmt.channels - 1
        tone = fmt.linear and not is_alpha
        base = index * fmt.sample_bytes
        if fmt.depth == "U8":
            out[base::step] = src.translate(_u8_table(True, False)) if tone else src
            continue
        for k, table in enumerate(_write_tables(fmt.depth, tone)):
            out[base + k::step] = src.translate(table)
    return bytes(out)


def rgba8_alpha_product(rgba: bytes, mask: bytes) -> bytes:
    """RGBA8 whose alpha is multiplied by a gray8 ``mask`` (the same pixel count)."""
    if len(rgba) != len(mask) * 4:
        raise ValueError("mask and image sizes differ")
    out = bytearray(rgba)
    alpha = rgba[3::4]
    if alpha.count(255) == len(alpha):
        out[3::4] = mask
    else:
        out[3::4] = bytes((a * m + 127) // 255 for a, m in zip(alpha, mask))
    return bytes(out)

"""Krita pixel layouts <-> RGBA8, checked against a per-pixel reference built from struct + math.

The plugin's conversions are whole-buffer bytes tricks (slices, translate,
65536-entry tables); the reference here decodes every sample one by one, so
a wrong channel order, byte order, tone curve or rounding shows up as a
mismatch.  No Krita needed.
"""
from __future__ import annotations

import random
import struct

import pytest

from impasto.plugin_krita.impasto_krita import pixels as P
from impasto.plugin_krita.impasto_krita.pixels import PixelFormat

DEPTHS = ("U8", "U16", "F16", "F32")


def srgb_encode(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * 12.92 if x <= 0.0031308 else 1.055 * x ** (1 / 2.4) - 0.055


def srgb_decode(x: float) -> float:
    return x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4


def ref_pack(rgba: bytes, fmt: PixelFormat) -> bytes:
    """Per-pixel reference of what Krita stores for these 8-bit sRGB pixels."""
    out = bytearray()
    code = {"U8": "B", "U16": "H", "F16": "e", "F32": "f"}[fmt.depth]
    for i in range(0, len(rgba), 4):
        r, g, b, a = rgba[i:i + 4]

        def sample(v8: int, alpha: bool):
            x = v8 / 255.0
            if fmt.linear and not alpha:
                x = srgb_decode(x)
            if fmt.depth == "U8":
                return int(round(x * 255))
            if fmt.depth == "U16":
                return int(x * 65535 + 0.5)
            return x

        if fmt.model == "GRAYA":
            lum = 0.2126 * srgb_decode(r / 255) + 0.7152 * srgb_decode(g / 255) + 0.0722 * srgb_decode(b / 255)
            gray8 = int(srgb_encode(lum) * 255 + 0.5)
            values = [sample(gray8, False), sample(a, True)]
        elif fmt.depth in ("U8", "U16"):
            values = [sample(b, False), sample(g, False), sample(r, False), sample(a, True)]
        else:
            values = [sample(r, False), sample(g, False), sample(b, False), sample(a, True)]
        out += struct.pack("=" + code * len(values), *values)
    return bytes(out)


def ref_unpack(raw: bytes, fmt: PixelFormat) -> bytes:
    code = {"U8": "B", "U16": "H", "F16": "e", "F32": "f"}[fmt.depth]
    n = fmt.channels
    step = fmt.pixel_bytes
    out = bytearray()
    for i in range(0, len(raw), step):
        vals = struct.unpack("=" + code * n, raw[i:i + step])

        def to8(v, alpha):
            if fmt.depth == "U8":
                x = v / 255
            elif fmt.depth == "U16":
                if not (fmt.linear and not alpha):
                    return v >> 8  # documented: the high byte
                x = v / 65535
            else:
                x = v
            if fmt.linear and not alpha:
                x = srgb_encode(x)
            x = min(max(x, 0.0), 1.0)
            return int(x * 255 + 0.5)

        if fmt.model == "GRAYA":
            g = to8(vals[0], False)
            out += bytes((g, g, g, to8(vals[1], True)))
        elif fmt.depth in ("U8", "U16"):
            b, g, r, a = vals
            out += bytes((to8(r, False), to8(g, False), to8(b, False), to8(a, True)))
        else:
            r, g, b, a = vals
            out += bytes((to8(r, False), to8(g, False), to8(b, False), to8(a, True)))
    return bytes(out)


def sample_rgba(n: int, seed: int = 0) -> bytes:
    rnd = random.Random(seed)
    data = bytearray(rnd.randrange(256) for _ in range(n * 4))
    # every 8-bit level appears in every channel at least once
    for v in range(256):
        if v * 4 + 3 < len(data):
            data[v * 4:v * 4 + 4] = bytes((v, 255 - v, (v * 37) % 256, v))
    return bytes(data)


def test_swap_red_blue_both_ways():
    bgra = bytes([1, 2, 3, 4, 5, 6, 7, 8])
    assert P.swap_red_blue(bgra) == bytes([3, 2, 1, 4, 7, 6, 5, 8])
    assert P.swap_red_blue(P.swap_red_blue(bgra)) == bgra


@pytest.mark.parametrize("profile,linear", [
    ("sRGB-elle-V2-srgbtrc.icc", False), ("sRGB-elle-V2-g10.icc", True), ("scRGB (linear)", True),
    ("Gray-D50-elle-V2-srgbtrc.icc", False), ("", False), ("Rec2020-elle-V4-g10.icc", True),
])
def test_linear_profiles_are_recognised(profile, linear):
    assert P.is_linear_profile(profile) is linear


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("model", ["RGBA", "GRAYA"])
def test_write_matches_reference(model, depth, linear):
    fmt = PixelFormat(model, depth, linear)
    rgba = sample_rgba(300)
    got = P.from_rgba8(rgba, fmt)
    want = ref_pack(rgba, fmt)
    assert len(got) == len(want) == 300 * fmt.pixel_bytes
    if model == "GRAYA":
        # the same luminance, to one 8-bit level (integer weights vs float maths)
        worst = max(abs(a - b) for a, b in zip(ref_unpack(got, fmt), ref_unpack(want, fmt)))
        assert worst <= 1
    elif depth in ("F16", "F32") or (linear and depth == "U8"):
        # floats: the same value to the format's rounding
        code = {"U8": "B", "U16": "H", "F16": "e", "F32": "f"}[depth]
        count = len(got) // struct.calcsize("=" + code)
        g = struct.unpack("=" + code * count, got)
        w = struct.unpack("=" + code * count, want)
        tol = {"F16": 1e-3, "F32": 1e-6, "U8": 1}[depth]
        assert max(abs(a - b) for a, b in zip(g, w)) <= tol
    else:
        assert got == want


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("model", ["RGBA", "GRAYA"])
def test_read_matches_reference(model, depth, linear):
    fmt = PixelFormat(model, depth, linear)
    raw = ref_pack(sample_rgba(300, seed=1), fmt)
    got = P.to_rgba8(raw, fmt)
    want = ref_unpack(raw, fmt)
    worst = max(abs(a - b) for a, b in zip(got, want))
    # F32 is read through its top 16 bits (documented): within one level
    assert worst <= (1 if depth == "F32" else 0), worst


@pytest.mark.parametrize("depth", ("U16", "F16", "F32"))
@pytest.mark.parametrize("linear", [False, True])
def test_rgba_round_trip_is_exact_for_every_level(depth, linear):
    """8-bit art written into a deep document reads back bit-identical (what the plugin sends)."""
    fmt = PixelFormat("RGBA", depth, linear)
    rgba = sample_rgba(1024, seed=2)
    assert P.to_rgba8(P.from_rgba8(rgba, fmt), fmt) == rgba


@pytest.mark.parametrize("depth", DEPTHS)
def test_gray_round_trip_of_gray_pixels(depth):
    fmt = PixelFormat("GRAYA", depth, depth != "U8")
    levels = bytes(range(256))
    rgba = bytearray(1024)
    rgba[0::4] = rgba[1::4] = rgba[2::4] = levels
    rgba[3::4] = levels[::-1]
    back = P.to_rgba8(P.from_rgba8(bytes(rgba), fmt), fmt)
    assert back == bytes(rgba)


def test_float_hdr_values_clip_and_nan_is_black():
    fmt = PixelFormat("RGBA", "F32", True)
    raw = struct.pack("=4f", 7.5, float("nan"), -0.25, 1.0) + struct.pack("=4f", 0.5, 0.5, 0.5, 0.5)
    out = P.to_rgba8(raw, fmt)
    assert out[:4] == bytes((255, 0, 0, 255))
    assert out[4:7] == bytes([round(srgb_encode(0.5) * 255)] * 3) and out[7] in (127, 128)


def test_chunking_gives_the_same_bytes():
    fmt = PixelFormat("RGBA", "U16", True)
    raw = P.from_rgba8(sample_rgba(5000, seed=3), fmt)
    assert P.to_rgba8(raw, fmt, chunk_pixels=333) == P.to_rgba8(raw, fmt, chunk_pixels=1 << 20)
    rgba = sample_rgba(5000, seed=4)
    assert P.from_rgba8(rgba, fmt, chunk_pixels=777) == P.from_rgba8(rgba, fmt)


def test_partial_pixels_and_unknown_models_are_refused():
    with pytest.raises(ValueError):
        P.to_rgba8(b"\x00" * 7, PixelFormat("RGBA", "U8"))
    with pytest.raises(P.UnsupportedFormat):
        P.to_rgba8(b"\x00" * 10, PixelFormat("CMYKA", "U8"))
    assert not PixelFormat("LABA", "U16").supported


def test_alpha_product_multiplies_by_the_mask():
    rgba = bytes([10, 20, 30, 255, 10, 20, 30, 128])
    out = P.rgba8_alpha_product(rgba, bytes([64, 255]))
    assert out == bytes([10, 20, 30, 64, 10, 20, 30, 128])

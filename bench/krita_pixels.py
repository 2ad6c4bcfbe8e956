"""How long the Krita plugin's pure-Python pixel work takes on a 4K canvas (3840x2160).

Measured: Krita layout <-> RGBA8 for every depth the plugin converts itself
(RGBA U8 / U16 / F16 / F32, linear profiles where Krita's defaults are
linear), the selection analysis and the context-window crop.  The baseline,
measured in the same run on the same buffer, is the obvious per-pixel Python
loop for the BGRA -> RGBA swap (run once: it is slow).  Medians of
``--repeat`` runs.

    python bench/krita_pixels.py [--repeat 5] [--width 3840 --height 2160] [--no-baseline]

Numbers depend on the machine and its load; quote them with the machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin_krita"))

from impasto_krita import masks, planning  # noqa: E402
from impasto_krita.pixels import PixelFormat, from_rgba8, swap_red_blue, to_rgba8  # noqa: E402


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def naive_swap(data: bytes) -> bytes:
    out = bytearray(len(data))
    for i in range(0, len(data), 4):
        out[i] = data[i + 2]
        out[i + 1] = data[i + 1]
        out[i + 2] = data[i]
        out[i + 3] = data[i + 3]
    return bytes(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=3840)
    ap.add_argument("--height", type=int, default=2160)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-baseline", action="store_true", help="skip the slow per-pixel loop")
    args = ap.parse_args()
    w, h, n = args.width, args.height, args.repeat
    px = w * h
    rgba = os.urandom(px * 4)
    print(f"canvas {w}x{h} ({px / 1e6:.1f} MP), median of {n} runs, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    rows = []
    bgra = swap_red_blue(rgba)
    t_swap = median_time(lambda: swap_red_blue(bgra), n)
    rows.append(("RGBA U8   read  (BGRA -> RGBA, slices)", t_swap))
    rows.append(("RGBA U8   write (RGBA -> BGRA, slices)", median_time(lambda: swap_red_blue(rgba), n)))
    for depth, linear in (("U16", False), ("U16", True), ("F16", True), ("F32", True)):
        fmt = PixelFormat("RGBA", depth, linear)
        raw = from_rgba8(rgba, fmt)
        curve = "linear" if linear else "sRGB"
        rows.append((f"RGBA {depth:<4} read  ({curve})", median_time(lambda: to_rgba8(raw, fmt), n)))
        rows.append((f"RGBA {depth:<4} write ({curve})", median_time(lambda: from_rgba8(rgba, fmt), n)))
    gray = PixelFormat("GRAYA", "U8")
    graw = from_rgba8(rgba, gray)
    rows.append(("GRAYA U8  read", median_time(lambda: to_rgba8(graw, gray), n)))
    rows.append(("GRAYA U8  write (luminance)", median_time(lambda: from_rgba8(rgba, gray), n)))
    sel = bytearray(px)
    for y in range(900, 1400):
        sel[y * w + 1500:y * w + 2100] = b"\xff" * 600
    sel = bytes(sel)
    rows.append(("selection analysis (bounds, softness)", median_time(lambda: masks.analyse(sel, w, h), n)))
    s = planning.Settings()
    window = planning.read_plan(s, w, h, sel).window
    rows.append((f"context window crop {window[2]}x{window[3]}",
                 median_time(lambda: masks.crop(rgba, w, window, 4), n)))
    for name, t in rows:
        print(f"  {name:<42} {t * 1000:9.1f} ms")
    if not args.no_baseline:
        t0 = time.perf_counter()
        naive_swap(bgra)
        t_naive = time.perf_counter() - t0
        print(f"  {'baseline: per-pixel Python loop swap (1 run)':<42} {t_naive * 1000:9.1f} ms")
        print(f"  slices vs per-pixel loop: {t_naive / t_swap:.0f}x faster")


if __name__ == "__main__":
    main()

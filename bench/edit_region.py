"""Benchmark: a region ("only masked") edit vs a whole-picture edit of the same big canvas.

Both edits change the same 300x200 mask on a 4096x4096 canvas, in-process
through :class:`impasto.backend.engine.Engine` and the tiny model (random
weights: the figures are about *where time goes*, not picture quality).  The
whole-picture edit diffuses the canvas at the model's ``max_size`` - without
a cap it would diffuse 4096x4096, which a CPU cannot do in useful time - so
the bench writes a model config with an explicit ``native_size`` and
``max_size`` and reports both.

Also measured: the paste-back (compositing the patch into a copy of the
canvas) for the region's patch and for a canvas-sized patch, and the mask
preparation on the canvas.

Runs alternate region / whole so that load from other processes on a shared
machine hits both alike; medians are reported, with the load average.

    python bench/edit_region.py [--runs 5] [--steps 8] [--canvas 4096] [--native 64] [--max-size 256]
                                [--out FILE.md] [--no-result]
Writes bench/results/edit_region.json; ``python bench/report.py`` renders its tables into
docs/performance.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build_canvas(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    canvas = np.zeros((size, size, 4), np.uint8)
    canvas[..., 0] = (np.arange(size) * 255 // (size - 1))[None, :]
    canvas[..., 1] = (np.arange(size) * 255 // (size - 1))[:, None]
    canvas[..., 2] = 120
    canvas[..., 3] = 255
    for _ in range(200):
        x, y = rng.integers(0, size - 64, 2)
        w, h = rng.integers(16, 400, 2)
        canvas[y:y + h, x:x + w, :3] = rng.integers(0, 256, 3)
    return canvas


def ellipse_mask(size: int, w: int = 300, h: int = 200) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    cx, cy = size * 0.55, size * 0.45
    inside = ((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1.0
    return inside.astype(np.uint8) * 255


def median_ms(values) -> float:
    return round(statistics.median(values) * 1000.0, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--strength", type=float, default=0.75)
    ap.add_argument("--canvas", type=int, default=4096)
    ap.add_argument("--native", type=int, default=64, help="the model's native_size (region diffusion area)")
    ap.add_argument("--max-size", type=int, default=256, help="the model's max_size (whole-picture cap)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared machine, threads beyond the free cores "
                         "spin; 0: torch's default)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "bench" / "edit_region.latest.md"))
    ap.add_argument("--no-result", action="store_true", help="keep bench/results as it is")
    args = ap.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from impasto.backend.engine import Engine
    from impasto.backend.engine.masks import prepare
    from impasto.backend.engine.paste import make_patch, paste
    from impasto.backend.tiny_model import build_tiny_model
    from impasto.protocol.messages import Generate, Image as WireImage

    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="impasto-bench-"))
    build_tiny_model(tmp / "tiny")
    (tmp / "tiny" / "impasto.json").write_text(json.dumps({"native_size": args.native, "max_size": args.max_size}))
    engine = Engine(tmp)
    engine.model("tiny")

    size = args.canvas
    canvas = build_canvas(size)
    mask = ellipse_mask(size)
    image_w = WireImage(width=size, height=size, data=canvas.tobytes(), format="rgba8")
    mask_w = WireImage(width=size, height=size, data=mask.tobytes(), format="gray8")

    def edit(whole: bool, job: str):
        req = Generate(job=job, prompt="a red circle", init_image=image_w, mask=mask_w, steps=args.steps,
                       strength=args.strength, seed=1, model="tiny", whole_picture=whole)
        t0 = time.perf_counter()
        res = engine.run(req)
        return time.perf_counter() - t0, res

    # warm-up: derived pipelines, allocator, first-call costs (not counted)
    for whole in (False, True):
        _, res = edit(whole, "warm")
        out = np.frombuffer(res.images[0].data, np.uint8).reshape(size, size, 4)
        far = prepare(mask, 0, 4).full() == 0
        assert (out[far] == canvas[far]).all(), "outside the mask must be bit-identical"

    runs = {"region": [], "whole": []}
    parts = {"region": {}, "whole": {}}
    info = {}
    for i in range(args.runs):
        for name, whole in (("region", False), ("whole", True)):
            wall, res = edit(whole, f"{name}{i}")
            runs[name].append(wall)
            for k, v in res.timings.items():
                parts[name].setdefault(k, []).append(v)
            info[name] = dict(res.info, steps_run=res.steps_run)
        print(f"run {i + 1}/{args.runs}: region {runs['region'][-1]:.3f} s, whole {runs['whole'][-1]:.3f} s",
              file=sys.stderr)

    # paste-back alone: the region's patch, and a canvas-sized patch
    prepared = prepare(mask, 0, 4)
    x0, y0, x1, y1 = prepared.feathered_bbox
    rng = np.random.default_rng(1)
    small = make_patch(rng.integers(0, 256, (y1 - y0, x1 - x0, 3), dtype=np.uint8),
                       prepared.crop((x0, y0, x1, y1)))
    full = make_patch(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), prepared.full())
    paste_small, paste_full, prep = [], [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        paste(canvas, small, x0, y0)
        paste_small.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        paste(canvas, full, 0, 0)
        paste_full.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        prepare(mask, 0, 4)
        prep.append(time.perf_counter() - t0)
    load_after = os.getloadavg()

    region_ms, whole_ms = median_ms(runs["region"]), median_ms(runs["whole"])
    rows = []
    for key in ("prepare", "encode", "denoise", "decode", "paste", "total"):
        r = parts["region"].get(key)
        w = parts["whole"].get(key)
        rows.append(f"| {key} | {median_ms(r) if r else '-'} | {median_ms(w) if w else '-'} |")
    ri, wi = info["region"], info["whole"]

    def area(i):
        x, y, w, h = i["region"]
        return f"{w}x{h} px at {x},{y}"

    def dsize(i):
        return "{}x{} ({}x{})".format(*i["diffusion_size"], *i["latent_size"])
    text = f"""# Editing performance: region ("only masked") vs whole picture

Measured by `bench/edit_region.py` on {time.strftime('%Y-%m-%d')} (in-process `Engine`, CPU, no daemon).

* Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} with
  {torch.get_num_threads()} threads, {engine.choice.describe()}. The machine is shared with other jobs:
  load average {load_before[0]:.1f} at the start and {load_after[0]:.1f} at the end, so absolute times are
  pessimistic; the two edits alternate run by run, so their *ratio* is the robust figure.
* Model: the tiny SD1.5-architecture model (random weights), configured with native_size {args.native}
  and max_size {args.max_size} (without a cap the whole-picture edit would diffuse all
  {size}x{size} pixels).
* Job: a {size}x{size} RGBA canvas, a 300x200 elliptical mask, mask blur 4, padding 32,
  {args.steps} steps at strength {args.strength} ({ri['steps_run']} steps run),
  {args.runs} runs each after one warm-up, medians.

| | region edit | whole-picture edit |
|---|---|---|
| diffused canvas area | {area(ri)} | {area(wi)} |
| diffusion size (latents) | {dsize(ri)} | {dsize(wi)} |
| **median wall time per edit** | **{region_ms} ms** | **{whole_ms} ms** |

Whole picture / region: **{whole_ms / region_ms:.1f}x** the time, same mask, same canvas, same run.

Median time by stage (ms, from `Result.timings`):

| stage | region | whole picture |
|---|---|---|
{chr(10).join(rows)}

"paste" includes scaling the diffused region back to canvas pixels and compositing every
image into a copy of the canvas.

Paste-back alone (`paste.paste`, median of {args.runs}, compositing into a fresh copy of the
{size}x{size} canvas):

| patch | median |
|---|---|
| the region's patch ({x1 - x0}x{y1 - y0}) | {median_ms(paste_small)} ms |
| a canvas-sized patch ({size}x{size}) | {median_ms(paste_full)} ms |
| mask preparation (grow 0, feather 4) on the {size}x{size} mask | {median_ms(prep)} ms |

Outside the mask and its feather band every pixel of both results was checked bit-identical
to the canvas.
"""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, out)
    print(text)
    if not args.no_result:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from results_io import write_result

        stage_rows = []
        for key in ("prepare", "encode", "denoise", "decode", "paste", "total"):
            r, w = parts["region"].get(key), parts["whole"].get(key)
            stage_rows.append([key, median_ms(r) if r else "-", median_ms(w) if w else "-"])
        write_result(
            "edit_region",
            {"runs_s": runs, "stages_s": parts, "info": info, "region_median_ms": region_ms,
             "whole_median_ms": whole_ms, "whole_over_region": round(whole_ms / region_ms, 2),
             "paste_small_s": paste_small, "paste_full_s": paste_full, "mask_prepare_s": prep},
            seeds=[0, 1], threads=torch.get_num_threads(), load_at_start=load_before[0], argv=sys.argv if argv is None else [sys.argv[0], *argv],
            baseline="the whole-picture edit of the same mask on the same canvas, alternated run by run",
            settings={"canvas": size, "mask": "300x200 ellipse", "mask_blur": 4, "padding": 32, "steps": args.steps,
                      "strength": args.strength, "native_size": args.native, "max_size": args.max_size,
                      "runs": args.runs, "device": engine.choice.describe()},
            tables={
                "main": {
                    "caption": f"Tiny SD1.5-architecture model (random weights) with native_size {args.native}, "
                               f"max_size {args.max_size}; a {size}x{size} RGBA canvas, a 300x200 elliptical mask, "
                               f"mask blur 4, padding 32, {args.steps} steps at strength {args.strength} "
                               f"({ri['steps_run']} run); {args.runs} runs each after one warm-up, alternated, medians.",
                    "columns": ["", "region edit", "whole-picture edit"],
                    "rows": [["diffused canvas area", area(ri), area(wi)],
                             ["diffusion size (latents)", dsize(ri), dsize(wi)],
                             ["**median wall time per edit**", f"**{region_ms} ms**", f"**{whole_ms} ms**"],
                             ["whole picture / region", "", f"**{whole_ms / region_ms:.1f}x** the time"]]},
                "stages": {"caption": "Median time by stage (ms, from `Result.timings`):",
                           "columns": ["stage", "region", "whole picture"], "rows": stage_rows},
                "paste": {
                    "caption": f"Paste-back alone (`paste.paste`, median of {args.runs}, compositing into a fresh "
                               f"copy of the {size}x{size} canvas):",
                    "columns": ["patch", "median"],
                    "rows": [[f"the region's patch ({x1 - x0}x{y1 - y0})", f"{median_ms(paste_small)} ms"],
                             [f"a canvas-sized patch ({size}x{size})", f"{median_ms(paste_full)} ms"],
                             [f"mask preparation (grow 0, feather 4) on the {size}x{size} mask",
                              f"{median_ms(prep)} ms"]]},
            })
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

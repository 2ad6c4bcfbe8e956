"""Masked edits on the starter model: does the masked region follow the new prompt?

For N scenes "a <fg> <shape> on a <bg> background" rendered by the domain
generator, a mask covering the shape's neighbourhood is repainted with a
prompt naming another shape and another foreground colour on the same
background ("a green square on a blue background"). The edited picture is
judged by the detector against the new caption, and every pixel outside mask +
feather band is checked bit-identical to the input.

What can fail and what cannot: the detector reads the background on the picture's
border, which lies outside the mask and is kept bit for bit, so "bg" of the whole
picture is right *by construction*. The background is therefore judged where the
model painted it: on the border of the inner square of the mask (the mask less its
feather band, 80x80 px), all of it repainted ("bg, repainted"). "all" = shape, fg
and the repainted background right. The whole-picture bg is still printed, labelled.

Usage: python bench/starter_edit_eval.py [--n 48] [--steps 20] [--sampler ddim] [--json out.json]
Writes bench/results/starter_edit_eval.json (``--no-result`` to skip).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from impasto.backend.engine import Engine
from impasto.backend.starter import domain
from impasto.backend.starter.detector import detect, judge
from impasto.protocol.messages import Generate, Image as WireImage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_result  # noqa: E402

SIZE, MARGIN, BLUR = 128, 16, 4
SCENE_SEED = 7
INNER = slice(MARGIN + 2 * BLUR, SIZE - MARGIN - 2 * BLUR)  # the mask less its feather band: all repainted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--cfg", type=float, default=5.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-result", action="store_true", help="keep bench/results as it is")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(SCENE_SEED)
    engine = Engine()
    names = list(domain.COLORS)
    tally = {"shape": 0, "fg": 0, "bg_repainted": 0, "all": 0, "bg_whole_picture_by_construction": 0}
    outside_exact = 0
    times = []
    for i in range(args.n):
        shape, new_shape = rng.choice(domain.SHAPES, 2, replace=False)
        bg, fg, new_fg = rng.choice(names, 3, replace=False)
        base = domain.render(str(shape), str(fg), str(bg), SIZE, int(rng.integers(1 << 30))).convert("RGBA")
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[MARGIN:SIZE - MARGIN, MARGIN:SIZE - MARGIN] = 255
        caption = domain.caption(str(new_shape), str(new_fg), str(bg))
        req = Generate(job=f"e{i}", prompt=caption, steps=args.steps, sampler=args.sampler, cfg_scale=args.cfg,
                       seed=i, init_image=WireImage(SIZE, SIZE, base.tobytes()),
                       mask=WireImage(SIZE, SIZE, mask.tobytes(), "gray8"), strength=1.0, mask_blur=BLUR,
                       fill="neutral", whole_picture=True)
        t0 = time.perf_counter()
        res = engine.run(req)
        times.append(time.perf_counter() - t0)
        out = np.frombuffer(res.images[0].data, np.uint8).reshape(SIZE, SIZE, 4)
        keep = np.ones((SIZE, SIZE), bool)
        keep[MARGIN - 2 * BLUR:SIZE - MARGIN + 2 * BLUR, MARGIN - 2 * BLUR:SIZE - MARGIN + 2 * BLUR] = False
        outside_exact += bool((out[keep] == np.asarray(base)[keep]).all())
        verdict = judge(Image.fromarray(out[..., :3]), caption)
        inner = Image.fromarray(np.ascontiguousarray(out[INNER, INNER, :3]))
        bg_ok = detect(inner)["bg"] == str(bg)  # the inner square's border: painted by the model
        tally["shape"] += bool(verdict["shape"])
        tally["fg"] += bool(verdict["fg"])
        tally["bg_repainted"] += bg_ok
        tally["all"] += bool(verdict["shape"] and verdict["fg"] and bg_ok)
        tally["bg_whole_picture_by_construction"] += bool(verdict["bg"])
    summary = {k: v / args.n for k, v in tally.items()}
    summary.update(n=args.n, outside_bit_identical=outside_exact / args.n, sampler=args.sampler,
                   steps=args.steps, cfg=args.cfg, median_edit_s=float(np.median(times)),
                   edit_s=[round(t, 4) for t in times])
    print(f"{args.n} masked edits ({args.sampler}, {args.steps} steps, CFG {args.cfg}, {SIZE} px):")
    print("  follows the new prompt: " + ", ".join(f"{k} {100 * summary[k]:.1f}%" for k in tally))
    print(f"  outside mask + feather bit-identical: {100 * summary['outside_bit_identical']:.1f}%")
    print(f"  median edit time {summary['median_edit_s'] * 1000:.0f} ms")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    if not args.no_result:
        pct = lambda k: f"{100 * summary[k]:.1f} %"  # noqa: E731
        write_result(
            "starter_edit_eval", summary, seeds=[SCENE_SEED] + list(range(args.n)), threads=1,
            baseline="none (targets are absolute: >= 90 % judged right, every edit bit-identical outside)",
            settings={"n": args.n, "size": SIZE, "mask": f"{SIZE - 2 * MARGIN}x{SIZE - 2 * MARGIN} centre square",
                      "mask_blur": BLUR, "strength": 1.0, "fill": "neutral", "sampler": args.sampler,
                      "steps": args.steps, "cfg": args.cfg, "whole_picture": True},
            tables={"main": {
                "caption": f"{args.n} generator scenes at {SIZE} px (scene seed {SCENE_SEED}, job seeds 0-{args.n - 1}); "
                           f"the middle {SIZE - 2 * MARGIN}x{SIZE - 2 * MARGIN} repainted with another shape and colour on "
                           f"the same background, strength 1.0, fill neutral, mask blur {BLUR}, {args.sampler} "
                           f"{args.steps} steps, CFG {args.cfg:g}, whole picture, 1 torch thread.",
                "columns": ["measure", "figure", "target"],
                "rows": [
                    ["edited picture judged right (shape, fg, background where repainted)", pct("all"), ">= 90 %"],
                    ["shape / fg", f"{pct('shape')} / {pct('fg')}", ""],
                    ["background inside the mask (border of the inner 80x80, all repainted)", pct("bg_repainted"), ""],
                    ["background of the whole picture (its border is outside the mask: right by construction, "
                     "not a result)", pct("bg_whole_picture_by_construction"), ""],
                    ["pixels outside mask + feather band bit-identical to the input",
                     f"{outside_exact} / {args.n} edits", "every edit"],
                    ["median time per edit", f"{summary['median_edit_s'] * 1000:.0f} ms", ""],
                ]}})


if __name__ == "__main__":
    main()

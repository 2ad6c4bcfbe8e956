"""Masked edits on the starter model: does the masked region follow the new prompt?

For N scenes "a <fg> <shape> on a <bg> background" rendered by the domain
generator, a mask covering the shape's neighbourhood is repainted with a
prompt naming another shape and another foreground colour on the same
background ("a green square on a blue background"). The edited picture is
judged by the detector against the new caption (shape, fg, bg, all), and every
pixel outside mask + feather band is checked bit-identical to the input.

Usage: python bench/starter_edit_eval.py [--n 48] [--steps 20] [--sampler ddim] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from PIL import Image

from impasto.backend.engine import Engine
from impasto.backend.starter import domain
from impasto.backend.starter.detector import judge
from impasto.protocol.messages import Generate, Image as WireImage

SIZE, MARGIN, BLUR = 128, 16, 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--cfg", type=float, default=5.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    engine = Engine()
    names = list(domain.COLORS)
    tally = {"shape": 0, "fg": 0, "bg": 0, "all": 0}
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
        for k in tally:
            tally[k] += bool(verdict[k])
    summary = {k: v / args.n for k, v in tally.items()}
    summary.update(n=args.n, outside_bit_identical=outside_exact / args.n, sampler=args.sampler,
                   steps=args.steps, median_edit_s=float(np.median(times)))
    print(f"{args.n} masked edits ({args.sampler}, {args.steps} steps, CFG {args.cfg}, {SIZE} px):")
    print("  follows the new prompt: " + ", ".join(f"{k} {100 * summary[k]:.1f}%" for k in tally))
    print(f"  outside mask + feather bit-identical: {100 * summary['outside_bit_identical']:.1f}%")
    print(f"  median edit time {summary['median_edit_s'] * 1000:.0f} ms")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)


if __name__ == "__main__":
    main()

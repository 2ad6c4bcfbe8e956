"""Seamless inpaints: the colour step across an edit's seam with and without the colour match.

The starter model paints the flat, saturated colours it was trained on, so a
picture whose surroundings carry a *gradient* (a lighting ramp across the
picture) or a *tint* (a warm or cold cast) is exactly where its inpaints come
back in the wrong colour.  For N generator scenes per condition (the starter's
own domain: "a <fg> <shape> on a <bg> background", 128 px) the surround is
graded or tinted, a disc around the middle is repainted with a prompt naming
another shape and colour, and the same request (same seed) runs twice in
the same process: ``colour_match`` on and off.

Measure: ``colour_match.seam_difference`` - the local mean colour of a 4-px
ring just inside the feather band against a 4-px ring just outside it,
mean absolute levels (0..255) over the seam.  The same measure on the
unedited input is given for scale (a smooth gradient across the band costs a
little even in a perfect edit, and the old shape often crosses the seam).  Every edit is also checked bit-identical
outside mask + feather band, on and off.

Usage: python bench/seam_match.py [--n 16] [--steps 20] [--sampler ddim] [--cfg 5] [--no-result]
Writes bench/results/seam_match.json (1 torch thread).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_result  # noqa: E402

from impasto.backend.engine import Engine, colour_match, masks  # noqa: E402
from impasto.backend.starter import domain  # noqa: E402
from impasto.protocol.messages import Generate, Image as WireImage  # noqa: E402

SIZE, RADIUS, BLUR, STRENGTH = 128, 30, 4, 0.8
SCENE_SEED = 19


def surround(base: np.ndarray, condition: str, rng: np.random.Generator) -> np.ndarray:
    """The scene with a lighting gradient or a colour tint over the whole picture (RGB uint8)."""
    x = base.astype(np.float64)
    if condition == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1) - 0.5
        ramp = np.cos(angle) * xx + np.sin(angle) * yy          # -0.7..0.7 across the picture
        x = x * (1.0 + 0.9 * ramp[..., None]) + 60 * ramp[..., None]
    else:
        x = x * 0.8 + rng.uniform(-50, 50, 3) + 25
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16, help="edits per condition (gradient, tint)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--cfg", type=float, default=5.0)
    ap.add_argument("--no-result", action="store_true", help="keep bench/results as it is")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(SCENE_SEED)
    engine = Engine()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    mask = np.where((yy - SIZE // 2) ** 2 + (xx - SIZE // 2) ** 2 < RADIUS ** 2, 255, 0).astype(np.uint8)
    feathered = masks.prepare(mask, 0, BLUR).full()
    names = list(domain.COLORS)
    rows = {c: {"on": [], "off": [], "floor": [], "ratio": [], "paste_on": [], "paste_off": []}
            for c in ("gradient", "tint")}
    outside_exact, seeds = 0, []
    for condition in rows:
        for i in range(args.n):
            shape, new_shape = rng.choice(domain.SHAPES, 2, replace=False)
            bg, fg, new_fg = rng.choice(names, 3, replace=False)
            base = np.asarray(domain.render(str(shape), str(fg), str(bg), SIZE, int(rng.integers(1 << 30))))
            picture = surround(base, condition, rng)
            rgba = np.dstack([picture, np.full((SIZE, SIZE), 255, np.uint8)])
            seed = len(seeds)
            seeds.append(seed)
            got = {}
            for on in (True, False):
                req = Generate(job=f"s{seed}", prompt=domain.caption(str(new_shape), str(new_fg), str(bg)),
                               steps=args.steps, sampler=args.sampler, cfg_scale=args.cfg, seed=seed,
                               init_image=WireImage(SIZE, SIZE, rgba.tobytes()),
                               mask=WireImage(SIZE, SIZE, mask.tobytes(), "gray8"), strength=STRENGTH,
                               mask_blur=BLUR, colour_match=on)
                res = engine.run(req)
                out = np.frombuffer(res.images[0].data, np.uint8).reshape(SIZE, SIZE, 4)
                outside_exact += bool((out[feathered == 0] == rgba[feathered == 0]).all())
                got[on] = out
                rows[condition]["paste_on" if on else "paste_off"].append(res.timings["paste"])
            r = rows[condition]
            r["on"].append(colour_match.seam_difference(got[True], feathered))
            r["off"].append(colour_match.seam_difference(got[False], feathered))
            r["floor"].append(colour_match.seam_difference(rgba, feathered))
            r["ratio"].append(r["on"][-1] / r["off"][-1])
            print(f"{condition} {i}: seam off {r['off'][-1]:.1f}  on {r['on'][-1]:.1f}  input {r['floor'][-1]:.1f}",
                  flush=True)
    med = lambda v: float(np.median(v))  # noqa: E731
    figures = {c: {"median_seam_off": med(r["off"]), "median_seam_on": med(r["on"]),
                   "median_seam_input": med(r["floor"]), "median_ratio_on_off": med(r["ratio"]),
                   "median_paste_ms_off": 1000 * med(r["paste_off"]), "median_paste_ms_on": 1000 * med(r["paste_on"]),
                   "seam_off": [round(v, 2) for v in r["off"]], "seam_on": [round(v, 2) for v in r["on"]],
                   "seam_input": [round(v, 2) for v in r["floor"]]} for c, r in rows.items()}
    total = 2 * 2 * args.n
    figures["outside_bit_identical"] = f"{outside_exact} / {total}"
    table = []
    for c, f in figures.items():
        if c == "outside_bit_identical":
            continue
        table.append([c, f"{f['median_seam_off']:.1f}", f"{f['median_seam_on']:.1f}", f"{f['median_ratio_on_off']:.2f}",
                      f"{f['median_seam_input']:.1f}", f"{f['median_paste_ms_off']:.1f} / {f['median_paste_ms_on']:.1f}"])
        print(f"{c}: median seam off {f['median_seam_off']:.2f}, on {f['median_seam_on']:.2f} "
              f"(ratio {f['median_ratio_on_off']:.2f}), input {f['median_seam_input']:.2f}")
    print(f"outside mask + feather band bit-identical: {outside_exact} / {total}")
    if not args.no_result:
        write_result(
            "seam_match", figures, seeds=[SCENE_SEED] + seeds, threads=1,
            baseline="the same edit (same request and seed, same process) with colour_match off",
            settings={"n_per_condition": args.n, "size": SIZE, "mask": f"disc r={RADIUS} px, centred",
                      "mask_blur": BLUR, "strength": STRENGTH, "fill": "original", "sampler": args.sampler,
                      "steps": args.steps, "cfg": args.cfg, "model": "starter (daemon default)"},
            tables={"main": {
                "caption": f"{args.n} starter-domain scenes per condition at {SIZE} px (scene seed {SCENE_SEED}), a "
                           f"r={RADIUS} px disc repainted with another shape and colour, strength {STRENGTH}, "
                           f"mask blur {BLUR}, {args.sampler} {args.steps} steps, CFG {args.cfg:g}, 1 torch thread. "
                           "Seam step = mean absolute difference (levels 0..255) of the local mean colour of a 4-px "
                           "ring inside the feather band vs a 4-px ring outside it; medians over edits; ratio = "
                           "median of per-edit on/off. Outside mask + feather band bit-identical: "
                           f"{outside_exact} / {total} edits (on and off).",
                "columns": ["surround", "seam step, match off", "seam step, match on", "on / off",
                            "same measure on the unedited input (its own shape often crosses the seam)", "paste ms off / on"],
                "rows": table}})


if __name__ == "__main__":
    main()

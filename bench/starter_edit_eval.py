"""Masked edits on the starter model: does the masked region follow the new prompt?

The bench follows the shipped starter's domain (its ``impasto.json``):

**scenes** (the 128 px starter, ``starter/scenes.py``): for N generator scenes of one
object of a training (family, colour, background) triple near the middle, the middle
96x96 is repainted with a prompt naming an object of a **held-out** triple on the same
background ("a green pentagon on a blue background"; never in a training scene).  The
edited picture is judged strictly (``scenes_eval.judge_scene``: family by the per-family
detectors, colour, and "count": no other object, so the old one must be gone), and every
pixel outside mask + feather band is checked bit-identical to the input.  Baseline,
measured in the same run with the same prompts and seeds: the same prompt painted as a
whole new picture (text to image) - how often the model paints that prompt at all.

**shapes** (the old 64 px starter, ``starter/domain.py``): "a <fg> <shape> on a <bg>
background" repainted with another shape and colour, judged by ``detector.judge``
(the figures of docs/performance.md's 64 px section).

What can fail and what cannot: a judge reads a picture's background on its border, which
lies outside the mask and is kept bit for bit, so the whole picture's background is right
*by construction*.  The background is therefore judged where the model painted it: on the
border of the inner square of the mask (the mask less its feather band, 80x80 px), all of
it repainted ("bg, repainted").  The whole-picture background is still printed, labelled.

Usage: python bench/starter_edit_eval.py [--n 48] [--steps 20] [--sampler ddim] [--json out.json]
Writes bench/results/starter_scenes_edit_eval.json (scenes) or starter_edit_eval.json (shapes);
``--no-result`` to skip.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_result  # noqa: E402  (import first: records the load at start)

from impasto.backend.engine import Engine  # noqa: E402
from impasto.backend.engine.model_card import read_card  # noqa: E402
from impasto.backend.engine.models import starter_dir  # noqa: E402
from impasto.protocol.messages import Generate, Image as WireImage  # noqa: E402

SIZE, MARGIN, BLUR = 128, 16, 4
SCENE_SEED = 7
INNER = slice(MARGIN + 2 * BLUR, SIZE - MARGIN - 2 * BLUR)  # the mask less its feather band: all repainted


def edit_request(i: int, base: Image.Image, prompt: str, args) -> Generate:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[MARGIN:SIZE - MARGIN, MARGIN:SIZE - MARGIN] = 255
    return Generate(job=f"e{i}", prompt=prompt, steps=args.steps, sampler=args.sampler, cfg_scale=args.cfg,
                    seed=i, init_image=WireImage(SIZE, SIZE, base.tobytes()),
                    mask=WireImage(SIZE, SIZE, mask.tobytes(), "gray8"), strength=1.0, mask_blur=BLUR,
                    fill="neutral", whole_picture=True)


def outside_kept(out: np.ndarray, base: Image.Image) -> bool:
    keep = np.ones((SIZE, SIZE), bool)
    keep[MARGIN - 2 * BLUR:SIZE - MARGIN + 2 * BLUR, MARGIN - 2 * BLUR:SIZE - MARGIN + 2 * BLUR] = False
    return bool((out[keep] == np.asarray(base)[keep]).all())


def scenes_cases(n: int):
    """(base scene, target scene) pairs: a training object in the middle -> a held-out triple's object."""
    from impasto.backend.starter import scenes as SC

    g = np.random.default_rng(SCENE_SEED)
    train, held = SC.train_triples(), SC.eval_triples()
    cases = []
    while len(cases) < n:
        f0, fg0, bg = train[int(g.integers(len(train)))]
        new = [t for t in held if t[2] == bg and t[0] != f0 and t[1] != fg0]
        if not new:
            continue
        fam, fg, _ = new[int(g.integers(len(new)))]
        r = float(g.uniform(0.16, 0.24))
        cx, cy = (0.5 + float(g.uniform(-0.05, 0.05)) for _ in range(2))
        base = SC.Scene(bg, [SC.Obj(f0, fg0, None, None, cx, cy, r, float(g.uniform(-15, 15)))])
        target = SC.Scene(bg, [SC.Obj(fam, fg, None, None, 0.5, 0.5, r, 0.0)])
        cases.append((base, target))
    return cases


def run_scenes(args, engine: Engine) -> dict:
    from impasto.backend.starter import judges as J
    from impasto.backend.starter import scenes as SC
    from impasto.backend.starter import scenes_eval as E

    keys = ("family", "colour", "count", "bg_repainted", "all", "bg_whole_picture_by_construction")
    tally = dict.fromkeys(keys, 0)
    base_keys = ("family", "colour", "bg", "count", "all")
    baseline = dict.fromkeys(base_keys, 0)
    outside_exact, times, shown = 0, [], []
    cases = scenes_cases(args.n)
    for i, (base_scene, target) in enumerate(cases):
        prompt = SC.caption(target)
        base = SC.render(base_scene, SIZE).convert("RGBA")
        t0 = time.perf_counter()
        res = engine.run(edit_request(i, base, prompt, args))
        times.append(time.perf_counter() - t0)
        out = np.frombuffer(res.images[0].data, np.uint8).reshape(SIZE, SIZE, 4)
        outside_exact += outside_kept(out, base)
        rgb = Image.fromarray(np.ascontiguousarray(out[..., :3]))
        v = E.judge_scene(rgb, target)
        bg_ok = J.find_objects(np.ascontiguousarray(out[INNER, INNER, :3]))[0] == target.bg
        for k in ("family", "colour", "count"):
            tally[k] += bool(v[k])
        tally["bg_repainted"] += bg_ok
        tally["all"] += bool(v["family"] and v["colour"] and v["count"] and bg_ok)
        tally["bg_whole_picture_by_construction"] += bool(v["bg"])
        # baseline: the same prompt and seed as a new picture
        new = engine.run(Generate(job=f"t{i}", prompt=prompt, width=SIZE, height=SIZE, steps=args.steps,
                                  sampler=args.sampler, cfg_scale=args.cfg, seed=i))
        t2i = Image.frombytes("RGBA", (SIZE, SIZE), new.images[0].data).convert("RGB")
        b = E.judge_scene(t2i, target)
        for k in base_keys:
            baseline[k] += bool(b[k]) if k != "all" else bool(b["family"] and b["colour"] and b["bg"] and b["count"])
        if len(shown) < 16:
            shown += [base.convert("RGB"), rgb]
    summary = {k: v / args.n for k, v in tally.items()}
    summary["txt2img_baseline"] = {k: v / args.n for k, v in baseline.items()}
    summary.update(example=SC.caption(cases[0][1]), n=args.n, domain="scenes",
                   outside_bit_identical=outside_exact / args.n, sampler=args.sampler,
                   steps=args.steps, cfg=args.cfg, median_edit_s=float(np.median(times)),
                   edit_s=[round(t, 4) for t in times], outside_exact=outside_exact)
    if args.grid:
        from impasto.backend.starter.evaluate import save_grid

        save_grid(shown, Path(args.grid), cols=8)
    return summary


def run_shapes(args, engine: Engine) -> dict:
    from impasto.backend.starter import domain
    from impasto.backend.starter.detector import detect, judge

    rng = np.random.default_rng(SCENE_SEED)
    names = list(domain.COLORS)
    tally = {"shape": 0, "fg": 0, "bg_repainted": 0, "all": 0, "bg_whole_picture_by_construction": 0}
    outside_exact, times = 0, []
    for i in range(args.n):
        shape, new_shape = rng.choice(domain.SHAPES, 2, replace=False)
        bg, fg, new_fg = rng.choice(names, 3, replace=False)
        base = domain.render(str(shape), str(fg), str(bg), SIZE, int(rng.integers(1 << 30))).convert("RGBA")
        caption = domain.caption(str(new_shape), str(new_fg), str(bg))
        t0 = time.perf_counter()
        res = engine.run(edit_request(i, base, caption, args))
        times.append(time.perf_counter() - t0)
        out = np.frombuffer(res.images[0].data, np.uint8).reshape(SIZE, SIZE, 4)
        outside_exact += outside_kept(out, base)
        verdict = judge(Image.fromarray(out[..., :3]), caption)
        inner = Image.fromarray(np.ascontiguousarray(out[INNER, INNER, :3]))
        bg_ok = detect(inner)["bg"] == str(bg)  # the inner square's border: painted by the model
        tally["shape"] += bool(verdict["shape"])
        tally["fg"] += bool(verdict["fg"])
        tally["bg_repainted"] += bg_ok
        tally["all"] += bool(verdict["shape"] and verdict["fg"] and bg_ok)
        tally["bg_whole_picture_by_construction"] += bool(verdict["bg"])
    summary = {k: v / args.n for k, v in tally.items()}
    summary.update(n=args.n, domain="shapes", outside_bit_identical=outside_exact / args.n, sampler=args.sampler,
                   steps=args.steps, cfg=args.cfg, median_edit_s=float(np.median(times)),
                   edit_s=[round(t, 4) for t in times], outside_exact=outside_exact)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--cfg", type=float, default=5.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--grid", default=None, help="scenes: save 8 (input, edit) pairs as one picture")
    ap.add_argument("--no-result", action="store_true", help="keep bench/results as it is")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    model = starter_dir()
    info = read_card(model, required=True)
    dom = (info.get("training") or {}).get("domain", "shapes")
    engine = Engine()
    s = run_scenes(args, engine) if dom == "scenes" else run_shapes(args, engine)
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    print(f"{args.n} masked edits ({dom}, {args.sampler}, {args.steps} steps, CFG {args.cfg}, {SIZE} px):")
    shown = {k: v for k, v in s.items() if isinstance(v, float) and k not in ("median_edit_s", "cfg")}
    print("  " + ", ".join(f"{k} {pct(v)}" for k, v in shown.items()))
    if dom == "scenes":
        print("  txt2img baseline: " + ", ".join(f"{k} {pct(v)}" for k, v in s["txt2img_baseline"].items()))
    print(f"  median edit time {s['median_edit_s'] * 1000:.0f} ms")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(s, fh, indent=2)
    if args.no_result:
        return
    n, ok = args.n, s["outside_exact"]
    settings = {"n": n, "size": SIZE, "mask": f"{SIZE - 2 * MARGIN}x{SIZE - 2 * MARGIN} centre square",
                "mask_blur": BLUR, "strength": 1.0, "fill": "neutral", "sampler": args.sampler,
                "steps": args.steps, "cfg": args.cfg, "whole_picture": True, "domain": dom,
                "native_size": info.get("native_size")}
    common = (f"the middle {SIZE - 2 * MARGIN}x{SIZE - 2 * MARGIN} repainted, strength 1.0, fill neutral, mask blur "
              f"{BLUR}, {args.sampler} {args.steps} steps, CFG {args.cfg:g}, whole picture, 1 torch thread.")
    if dom == "scenes":
        b = s["txt2img_baseline"]
        rows = [
            ["edited picture judged right (family, colour, nothing else left, background where repainted)",
             pct(s["all"]), pct(b["all"]), ">= 90 %"],
            ["family (strict judge) / colour", f"{pct(s['family'])} / {pct(s['colour'])}",
             f"{pct(b['family'])} / {pct(b['colour'])}", ""],
            ["no other object (the old one gone)", pct(s["count"]), pct(b["count"]), ""],
            ["background inside the mask (border of the inner 80x80, all repainted)", pct(s["bg_repainted"]),
             f"{pct(b['bg'])} (whole picture)", ""],
            ["background of the whole picture (its border is outside the mask: right by construction, "
             "not a result)", pct(s["bg_whole_picture_by_construction"]), "", ""],
            ["pixels outside mask + feather band bit-identical to the input", f"{ok} / {n} edits", "", "every edit"],
            ["median time per edit", f"{s['median_edit_s'] * 1000:.0f} ms", "", ""],
        ]
        write_result(
            "starter_scenes_edit_eval", s, seeds=[SCENE_SEED] + list(range(n)), threads=1,
            baseline="the same prompts and seeds painted as new pictures (text to image), same run",
            settings=settings,
            tables={"main": {
                "caption": f"{n} generator scenes at {SIZE} px (one object of a training triple near the middle, "
                           f"scene seed {SCENE_SEED}, job seeds 0-{n - 1}); {common} Prompts name an object of a "
                           "held-out (family, colour, background) triple on the same background, e.g. "
                           f"\"{s.get('example', '')}\".",
                "columns": ["measure", "masked edit", "baseline: same prompt, text to image", "target"],
                "rows": rows}})
        return
    rows = [
        ["edited picture judged right (shape, fg, background where repainted)", pct(s["all"]), ">= 90 %"],
        ["shape / fg", f"{pct(s['shape'])} / {pct(s['fg'])}", ""],
        ["background inside the mask (border of the inner 80x80, all repainted)", pct(s["bg_repainted"]), ""],
        ["background of the whole picture (its border is outside the mask: right by construction, "
         "not a result)", pct(s["bg_whole_picture_by_construction"]), ""],
        ["pixels outside mask + feather band bit-identical to the input", f"{ok} / {n} edits", "every edit"],
        ["median time per edit", f"{s['median_edit_s'] * 1000:.0f} ms", ""],
    ]
    write_result(
        "starter_edit_eval", s, seeds=[SCENE_SEED] + list(range(n)), threads=1,
        baseline="none (targets are absolute: >= 90 % judged right, every edit bit-identical outside)",
        settings=settings,
        tables={"main": {
            "caption": f"{n} generator scenes at {SIZE} px (scene seed {SCENE_SEED}, job seeds 0-{n - 1}); "
                       f"another shape and colour on the same background; {common}",
            "columns": ["measure", "figure", "target"], "rows": rows}})


if __name__ == "__main__":
    main()

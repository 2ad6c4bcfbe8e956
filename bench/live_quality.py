"""What live painting paints: rough canvases of held-out prompts, judged strictly, per step count.

An artist in live mode blocks in shapes roughly and lets each stroke's job clean
them up.  This bench paints such canvases and runs the live job on each:

* **the canvas** - a held-out prompt's scene (``backend/starter/scenes_eval.py``:
  one object with size and place, one plain object, or two objects; triples never
  trained) painted roughly: every object a wobbly filled silhouette (the hand's
  tremor of the control model's drawings, ``backend/starter/drawings.py``) in its
  colour with the paint's value off by up to +-28 levels per channel, the
  background off by up to +-16, and 0-2 stray brush marks; at 512 px, as a client
  sends it.  The strict judges rarely accept the canvas itself (reported: the
  share already "all right" before the job).
* **the live job** as the client core plans it for the starter - its LCM-LoRA at
  weight 1, the sampler its preset names (``--samplers`` to compare others), CFG 1, denoising
  strength 0.5, ``fast_vae`` unset (on the starter: its
  fast encoder, and the VAE's decode: its preview decoder rounds corners) - with the
  number of steps that *run* varied (``--steps``: 1-4; at strength 0.5 a
  ``steps`` of k runs k steps, the floor of :mod:`impasto.backend.engine.strength`),
  through :meth:`Engine.run` in this process (engine time only; the whole stroke
  -> paint path is ``bench/live_latency.py``).
* **the live job with the full VAE** (``fast_vae`` false) at the most steps: what the
  fast autoencoder costs in shapes;
* **reference, same run**: the starter alone at its own recommended settings for an
  img2img (DDIM, CFG 3, 20 steps at strength 0.5: 10 run, full VAE) - what a
  non-live refine of the same canvas paints, at its cost.

Judged by the same strict judges as the starter's prompt-following table (family,
colour, background, place cell, size class, object count): "all right" is the share
of canvases whose result has every asked attribute.  Also: the median change of the
result from the canvas (0-255) and the median engine time per job.

    python bench/live_quality.py [--n 32] [--kinds one,plain,two] [--steps 1 2 3 4] [--threads 1]
        [--samplers lcm lcm_quadratic] [--split train]   (choose on the training triples, then run held-out once)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_io  # noqa: E402  (first: the load average at the start)

KIND_NAMES = {"one": "one object, size + place", "plain": "one object, plain", "two": "two objects"}
SIDE = 512
STRENGTH = 0.5
SEED = 7000


def rough_canvas(scene, rng, side: int = SIDE):
    """``scene`` painted roughly at ``side`` px: RGB uint8 (see the module doc)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    from impasto.backend.starter import drawings as DR
    from impasto.backend.starter import scenes as SC
    from impasto.backend.starter.domain import COLORS

    def off(rgb, amount):
        return np.clip(np.asarray(rgb, np.float64) + rng.uniform(-amount, amount, 3), 0, 255)

    S = side
    canvas = np.empty((S, S, 3), np.float64)
    canvas[:] = off(COLORS[scene.bg], 16)
    for o in scene.objects:
        d = DR.make_scene_drawing(SC.Scene(scene.bg, [o]), rng, filled_fraction=1.0)
        mask = DR._scene_mask(d, S)
        canvas[mask] = off(COLORS[o.fg], 28)
    img = Image.fromarray(canvas.round().astype(np.uint8))
    draw = ImageDraw.Draw(img)
    names = list(COLORS)
    for _ in range(int(rng.integers(0, 3))):      # stray marks: short, thin, any colour of the palette
        x, y = (float(v) for v in rng.uniform(0.05, 0.95, 2) * S)
        pts = [(x, y)]
        for _ in range(int(rng.integers(1, 4))):
            x = float(np.clip(x + rng.uniform(-0.12, 0.12) * S, 0, S - 1))
            y = float(np.clip(y + rng.uniform(-0.12, 0.12) * S, 0, S - 1))
            pts.append((x, y))
        colour = tuple(int(v) for v in off(COLORS[names[int(rng.integers(len(names)))]], 20))
        draw.line(pts, fill=colour, width=max(2, int(S * rng.uniform(0.008, 0.02))), joint="curve")
    return np.asarray(img.filter(ImageFilter.GaussianBlur(S / 512)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32, help="canvases per kind")
    ap.add_argument("--kinds", default="one,plain,two")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--strengths", type=float, nargs="+", default=[STRENGTH])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--samplers", nargs="+", default=None,
                    help="live jobs' samplers (default: the one the starter's few-step LoRA preset names)")
    ap.add_argument("--split", choices=("held_out", "train"), default="held_out",
                    help="train: canvases of training triples, to choose a setting on without touching the held-out")
    ap.add_argument("--no-reference", action="store_true", help="skip the starter-alone DDIM reference")
    ap.add_argument("--grid", type=Path, default=None, help="write a picture grid (canvas / live rows)")
    ap.add_argument("--grid-steps", type=int, default=4, help="the live job the grid shows (steps run)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from PIL import Image

    from impasto.backend.engine import Engine, JobHooks
    from impasto.backend.engine.images import from_wire, to_wire
    from impasto.backend.starter import scenes as SC
    from impasto.backend.starter.scenes_eval import judge_scene, prompt_scenes
    from impasto.protocol.messages import Generate
    from impasto.protocol.settings import SAMPLER_LABELS_SHORT

    torch.set_num_threads(args.threads)
    engine = Engine(models_dir=Path(tempfile.mkdtemp()))   # an empty models folder: the shipped starter
    starter = next(e for e in engine.models() if e.name == "starter")
    live = starter.live or {}
    lora = live.get("concept")
    if not lora:
        raise SystemExit("the starter has no few-step LoRA shipped beside it (backend/assets)")
    rec = starter.recommended or {}
    native = int(starter.native_size or 128)

    kinds = [k for k in args.kinds.split(",") if k]
    samplers = args.samplers or [str((live.get("recommended") or {}).get("sampler") or "lcm")]
    variants = [(f"live ({SAMPLER_LABELS_SHORT.get(sa, sa)}), strength {st:g}, {k} step{'s' if k > 1 else ''} run",
                 dict(steps=k, sampler=sa, cfg_scale=1.0, concepts=[(lora, 1.0)], live=True, strength=st))
                for sa in samplers for st in args.strengths for k in args.steps]
    top = max(args.steps)
    variants.append((f"live ({SAMPLER_LABELS_SHORT.get(samplers[0], samplers[0])}), strength {STRENGTH:g}, {top} "
                     "steps run, full VAE (fast_vae false)",
                     dict(steps=top, sampler=samplers[0], cfg_scale=1.0, concepts=[(lora, 1.0)], live=True,
                          strength=STRENGTH, fast_vae=False)))
    if not args.no_reference:
        variants.append(("starter alone (DDIM 20 at 0.5: 10 run, CFG 3, full VAE)",
                         dict(steps=int(rec.get("steps", 20)), sampler="ddim", strength=STRENGTH,
                              cfg_scale=float(rec.get("guidance_scale", 3.0)), concepts=[], live=False)))

    def job(canvas_wire, prompt, v) -> Generate:
        return Generate(job="q", model="starter", prompt=prompt, negative_prompt="", init_image=canvas_wire,
                        seed=args.seed, **v)

    report = {"kinds": {}, "side": SIDE, "strength": STRENGTH, "seed": args.seed, "split": args.split,
              "samplers": samplers,
              "variants": [name for name, _ in variants]}
    grid_rows = []
    for kind in kinds:
        scenes = prompt_scenes(kind, args.n, seed=args.seed + {"one": 0, "plain": 1, "two": 2}[kind], split=args.split)
        rng = np.random.default_rng(args.seed + 17 * (1 + kinds.index(kind)))
        canvases = [rough_canvas(sc, rng) for sc in scenes]
        small = [np.asarray(Image.fromarray(c).resize((native, native), Image.LANCZOS)) for c in canvases]
        per = {"canvas": {"all": [judge_scene(s, sc)["all"] for s, sc in zip(small, scenes)]}}
        engine.run(job(to_wire(Image.fromarray(canvases[0]).convert("RGBA")), SC.caption(scenes[0]),
                       variants[0][1]), JobHooks())     # warm-up, not counted
        for name, v in variants:
            marks = {"all": [], "family": [], "change": [], "ms": []}
            pics = []
            for c, s, sc in zip(canvases, small, scenes):
                wire = to_wire(Image.fromarray(c).convert("RGBA"))
                t0 = time.perf_counter()
                res = engine.run(job(wire, SC.caption(sc), v), JobHooks())
                marks["ms"].append((time.perf_counter() - t0) * 1000)
                out = np.asarray(from_wire(res.images[0]).convert("RGB"))
                out_small = np.asarray(Image.fromarray(out).resize((native, native), Image.LANCZOS))
                verdict = judge_scene(out_small, sc)
                marks["all"].append(verdict["all"])
                marks["family"].append(verdict["family"])
                marks["change"].append(float(np.abs(out.astype(np.float64) - c).mean()))
                pics.append(out_small)
            per[name] = marks
            if v.get("live") and v.get("steps") == args.grid_steps and v.get("strength") == STRENGTH \
                    and v.get("fast_vae") is None and v.get("sampler") == samplers[0]:
                grid_rows.append((kind, small[:8], pics[:8]))
            share = sum(marks["all"]) / len(scenes)
            print(f"{kind:5s} {name}: all right {100 * share:.1f} %, family {100 * sum(marks['family']) / len(scenes):.1f} %, "
                  f"change {statistics.median(marks['change']):.1f}, {statistics.median(marks['ms']):.1f} ms", flush=True)
        report["kinds"][kind] = {
            "canvases": len(scenes),
            "canvas_all_right": round(sum(per["canvas"]["all"]) / len(scenes), 4),
            "results": {name: {"all_right": round(sum(m["all"]) / len(scenes), 4),
                               "family_right": round(sum(m["family"]) / len(scenes), 4),
                               "all_right_count": int(sum(m["all"])),
                               "median_change_levels": round(statistics.median(m["change"]), 2),
                               "median_ms": round(statistics.median(m["ms"]), 1),
                               "per_canvas_all": [bool(x) for x in m["all"]]}
                        for name, m in per.items() if name != "canvas"}}

    # pooled over kinds, and a paired comparison against the most steps
    pooled = {}
    for name, _ in variants:
        rights = [x for k in kinds for x in report["kinds"][k]["results"][name]["per_canvas_all"]]
        ms = [report["kinds"][k]["results"][name]["median_ms"] for k in kinds]
        pooled[name] = {"all_right": round(sum(rights) / len(rights), 4), "count": int(sum(rights)),
                        "of": len(rights), "median_ms_by_kind": ms}
    report["pooled"] = pooled
    canvas_pooled = sum(report["kinds"][k]["canvas_all_right"] * report["kinds"][k]["canvases"] for k in kinds)
    report["canvas_all_right_pooled"] = round(canvas_pooled / sum(report["kinds"][k]["canvases"] for k in kinds), 4)

    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    rows = []
    for name, _ in variants:
        cells = [pct(report["kinds"][k]["results"][name]["all_right"]) for k in kinds]
        ms = statistics.median(report["kinds"][k]["results"][name]["median_ms"] for k in kinds)
        ch = statistics.median(report["kinds"][k]["results"][name]["median_change_levels"] for k in kinds)
        rows.append([name, *cells, f"{pct(pooled[name]['all_right'])} ({pooled[name]['count']}/{pooled[name]['of']})",
                     f"{ch:.1f}", f"{ms:.1f}"])
    rows.append(["the rough canvas itself (before any job)",
                 *[pct(report["kinds"][k]["canvas_all_right"]) for k in kinds],
                 pct(report["canvas_all_right_pooled"]), "0", "-"])
    tables = {"live_quality": {
        "caption": f"Rough canvases ({SIDE} px) of {'held-out' if args.split == 'held_out' else 'training-triple'} "
                   f"prompts, {args.n} per kind, one seed ({args.seed}); "
                   f"live jobs: the starter with its LCM-LoRA, CFG 1, strength {STRENGTH}, fast_vae unset (on the "
                   "starter: its fast encoder, decoded by the VAE); "
                   "strict judges (all attributes right); change = median mean absolute difference from the canvas "
                   f"(0-255); time = median engine time per job ({args.threads} thread; a quality bench: the "
                   "timing bench is live_engine).",
        "columns": ["job", *[f"all right: {KIND_NAMES.get(k, k)}" for k in kinds], "all right, pooled",
                    "change from canvas", "ms per job"],
        "rows": rows}}
    for name, p in pooled.items():
        print(f"pooled {name}: {pct(p['all_right'])} ({p['count']}/{p['of']})")
    print(f"canvas itself: {pct(report['canvas_all_right_pooled'])}")

    if args.grid and grid_rows:
        from impasto.backend.starter.evaluate import save_grid

        cell = lambda a: Image.fromarray(a).resize((96, 96), Image.NEAREST)  # noqa: E731
        save_grid([cell(a) for _, canv, outs in grid_rows for row in (canv, outs) for a in row], args.grid,
                  cols=len(grid_rows[0][1]))   # every kind has the same number of canvases: rows line up
        print(f"grid: {args.grid}")

    if not args.no_write:
        path = results_io.write_result(
            "live_quality", report, threads=args.threads, argv=argv, tables=tables,
            baseline="the starter alone at its recommended img2img settings (DDIM, CFG 3, 20 steps at strength 0.5), "
                     "same canvases and seed, same run",
            seeds=[args.seed],
            settings={"n": args.n, "kinds": kinds, "steps_run": args.steps, "strength": STRENGTH, "side": SIDE,
                      "samplers": samplers, "split": args.split})
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

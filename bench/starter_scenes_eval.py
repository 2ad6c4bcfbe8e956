"""Prompt following of a scenes-domain starter (the richer 128 px one) on held-out triples.

    python bench/starter_scenes_eval.py --model DIR [--n 48] [--seed 0] [--threads 1]
        [--json bench/results/starter_scenes.json] [--grid docs/starter-scenes-grid.png]

Kinds of prompt (``backend/starter/scenes_eval.py``): ``one`` (one object with size and
place), ``plain`` (no size or place), ``two`` (two objects); every prompt is built on a
(family, colour, background) triple held out of training.  Judged strictly (family by the
per-family detectors, colour, background, place cell, size class, object count).  The
generator's own pictures of the same scenes are scored too: the judge's ceiling; and those
pictures encoded and decoded by the model's own VAE: the best any UNet could do through it.
DDIM 20 steps, CFG 5, empty negative prompt, one seed per prompt.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_io  # noqa: E402  (import first: records the load at start)

import torch  # noqa: E402


KIND_NAMES = {"one": "one object, size + place", "plain": "one object, plain", "two": "two objects"}
COLUMNS = ("all", "family", "colour", "bg", "place", "size", "count")


def table(report) -> dict:
    """The page's table: per kind, the share right per attribute, and the generator's (the judge's ceiling)."""
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    rows = []
    for kind, r in report["kinds"].items():
        m, g = r["model"], r["generator_ceiling"]
        v = r.get("vae_round_trip_ceiling", {})
        cells = [pct(m[k]) if not (kind == "plain" and k in ("place", "size")) else "(n/a)" for k in COLUMNS]
        rows.append([f"{KIND_NAMES.get(kind, kind)} ({r['prompts']} prompts)", *cells,
                     f"{pct(v['all'])} (family {pct(v['family'])})" if v else "-", pct(g["all"])])
    return {"caption": f"{report['label'] or report['model']}: held-out (family, colour, background) triples, "
                       f"{report['size']} px, {report['sampler']} {report['steps']} steps, CFG {report['cfg']:g}, "
                       f"one seed per prompt ({report['seed']}..), strict judges; a plain prompt's place and size "
                       "are not asked.",
            "columns": ["kind", "all right", "family", "colour", "background", "place", "size", "count",
                        "generator through the VAE (model ceiling)", "generator (judge ceiling)"],
            "rows": rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--n", type=int, default=48, help="prompts per kind")
    ap.add_argument("--kinds", default="one,plain,two")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--grid", type=Path, default=None)
    ap.add_argument("--label", default="", help="free text stored in the JSON (e.g. the training step)")
    ap.add_argument("--split", choices=("held_out", "train"), default="held_out",
                    help="train: prompts on the training triples (to tune a setting on; the figures are not held out)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from impasto.backend.engine.model_card import native_size, read_card
    from impasto.backend.starter import scenes as SC
    from impasto.backend.starter import scenes_eval as E
    from impasto.backend.starter.evaluate import generate, load_pipeline, save_grid, vae_roundtrip

    pipe = load_pipeline(args.model, "ddim")
    info = read_card(args.model)
    size = native_size(args.model, default=SC.NATIVE_SIZE)
    report = {"bench": "starter_scenes_eval", "command": "python bench/starter_scenes_eval.py " + " ".join(argv or sys.argv[1:]),
              "machine": None, "torch_threads": args.threads,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "model": str(args.model),
              "label": args.label, "training": info.get("training", {}), "size": size, "sampler": "ddim",
              "steps": args.steps, "cfg": args.cfg, "seed": args.seed, "split": args.split, "kinds": {}}
    shown = []
    for kind in [k for k in args.kinds.split(",") if k]:
        scenes = E.prompt_scenes(kind, args.n, args.seed, split=args.split)
        prompts = [SC.caption(s) for s in scenes]
        t0 = time.perf_counter()
        imgs = generate(pipe, prompts, size, args.steps, args.cfg, args.seed, batch=16)
        dt = time.perf_counter() - t0
        clean = [SC.render(s, size) for s in scenes]
        report["kinds"][kind] = {"prompts": len(prompts), "model": E.score(imgs, scenes),
                                 "generator_ceiling": E.score(clean, scenes),
                                 # the best the model can draw: the generator's picture through its own VAE
                                 "vae_round_trip_ceiling": E.score(vae_roundtrip(pipe, clean), scenes),
                                 "seconds": round(dt, 1), "example": prompts[0]}
        print(kind, json.dumps(report["kinds"][kind]), file=sys.stderr, flush=True)
        shown += imgs[:8]
    if args.grid and shown:
        save_grid(shown, args.grid, cols=8)
    report["machine"] = results_io.machine(results_io._START_LOAD)
    report["seeds"] = list(range(args.seed, args.seed + args.n))
    report["baseline"] = ("generator_ceiling: the same scenes rendered by the generator, judged the same way; "
                          "vae_round_trip_ceiling: those pictures encoded and decoded by the model's own VAE (the "
                          "best its decoder can show), judged the same way")
    report["tables"] = {"main": table(report)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        from impasto.protocol.atomic import write_atomic

        write_atomic(args.json, (json.dumps(report, indent=2) + "\n").encode())
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()

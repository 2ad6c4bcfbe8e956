"""Does the starter's control model put the shape where the artist drew it?  Held-out drawings, with vs without.

For each of ``--n`` held-out drawings (a new seed stream: positions, sizes,
wobbles and outline/silhouette choices the training never drew) and a prompt
("a red circle on a blue background", the drawing's shape), two jobs run
through the real engine path (``Engine.run`` with a control unit, the way the
daemon runs them), same seed, same settings:

* **with** the control unit: the drawing as an artist's layer - dark strokes
  on white - sent with type ``scribble`` (the daemon's preprocessor turns it
  into the map), strength 1, the whole schedule;
* **without** it: the same prompt and seed, no unit (the baseline).

Measured per picture: the IoU of the generated shape's mask (the starter's
detector) with the drawn region (the filled drawing), and whether the prompt's
colours and shape kind are right (the starter's judge).  Reported: the
fraction with IoU >= 0.8, the median IoU, the fraction with the prompt right,
for both.  Targets (issue 16): IoU >= 0.8 in >= 90 % of pictures and the prompt
right >= 90 % with control; a much lower IoU without.

Usage: python bench/starter_control_eval.py --control DIR [--n 200] [--steps 20] [--cfg 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from bench_home import temp_engine  # bench/ is on sys.path when a benchmark runs as a script
from results_io import write_result

EVAL_SEED = 777_000_001       # the held-out drawings' stream (training draws from --seed of train_control)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def artist_layer(drawing_map: np.ndarray) -> np.ndarray:
    """The drawing as an artist paints it: dark strokes on a white layer (RGBA)."""
    h, w = drawing_map.shape[:2]
    out = np.full((h, w, 4), 255, np.uint8)
    out[..., :3] = 255 - drawing_map
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--control", type=Path, required=True, help="the trained ControlNet folder")
    ap.add_argument("--model", type=Path, default=None, help="base model folder (default: the shipped starter)")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=5.0)
    ap.add_argument("--strength", type=float, default=1.0)
    ap.add_argument("--combos", choices=("train", "held_out"), default="train",
                    help="prompts from the starter's training combinations or its held-out ones")
    ap.add_argument("--seed", type=int, default=EVAL_SEED)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--grid", type=Path, default=None, help="save a drawing / without / with grid (PNG)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--publish", default="", help="write bench/results/<name>.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    work, engine, model = temp_engine("impasto-bench-ctl-eval-", args.model, tiny_fallback=False)
    try:
        from impasto.backend.starter import detector
        from impasto.backend.starter import domain as D
        from impasto.backend.starter import drawings as Dr
        from impasto.protocol.messages import ControlUnit, Generate, Image

        ctl_dir = work / "models" / "controlnet"
        ctl_dir.mkdir(parents=True, exist_ok=True)
        os.symlink(args.control.resolve(), ctl_dir / "starter-control")
        name = model.name
        size = engine.model(name).entry.native_size
        combos = D.train_combos() if args.combos == "train" else D.eval_combos()
        rng = np.random.default_rng(args.seed)
        _, maps, captions, drawings = Dr.sample(args.n, size, rng, combos=combos)
        rows = {"with": [], "without": []}
        grid = []
        for i in range(args.n):
            layer = artist_layer(maps[i])
            for mode in ("without", "with"):
                units = [ControlUnit("scribble", Image(size, size, layer.tobytes()), "starter-control",
                                     args.strength)] if mode == "with" else []
                r = engine.run(Generate(job="e", prompt=captions[i], model=name, width=size, height=size,
                                        steps=args.steps, cfg_scale=args.cfg, seed=args.seed + i, sampler="ddim",
                                        control=units))
                pic = np.frombuffer(r.images[0].data, np.uint8).reshape(size, size, 4)[..., :3]
                found = detector.analyse(pic)
                region = Dr.drawn_region(drawings[i], found["mask"].shape[0])   # the detector's own grid
                ok = detector.judge(pic, captions[i])
                rows[mode].append({"iou": round(iou(found["mask"], region), 4), "prompt_right": bool(ok["all"]),
                                   "shape_right": bool(ok["shape"]), "colours_right": bool(ok["fg"] and ok["bg"])})
                if args.grid and i < 16:
                    grid.append(pic)
            if args.grid and i < 16:
                grid.insert(len(grid) - 2, maps[i])
            if (i + 1) % 20 == 0:
                print(f"{i + 1}/{args.n}", file=sys.stderr)

        def summary(rs):
            ious = [r["iou"] for r in rs]
            return {"iou_ge_0_8": round(sum(x >= 0.8 for x in ious) / len(ious), 4),
                    "median_iou": round(statistics.median(ious), 4),
                    "prompt_right": round(sum(r["prompt_right"] for r in rs) / len(rs), 4),
                    "shape_right": round(sum(r["shape_right"] for r in rs) / len(rs), 4),
                    "colours_right": round(sum(r["colours_right"] for r in rs) / len(rs), 4)}

        meta_path = args.control / "impasto.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        figures = {"with_control": summary(rows["with"]), "without_control": summary(rows["without"]),
                   "n": args.n, "steps": args.steps, "cfg": args.cfg, "strength": args.strength,
                   "combos": args.combos, "control_model": str(args.control), "control_training": meta.get("training"),
                   "raw_iou": {mode: [r["iou"] for r in rs] for mode, rs in rows.items()},
                   "raw_prompt_right": {mode: "".join("1" if r["prompt_right"] else "0" for r in rs)
                                        for mode, rs in rows.items()}}
        print(json.dumps({k: v for k, v in figures.items() if not k.startswith("raw")}, indent=2))
        if args.grid and grid:
            from PIL import Image as PILImage

            cols = [np.concatenate(grid[j:j + 3], axis=0) for j in range(0, len(grid) - 2, 3)]
            PILImage.fromarray(np.concatenate(cols, axis=1)).resize(
                (len(cols) * size * 3, 3 * size * 3), PILImage.NEAREST).save(args.grid)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        if args.publish:
            w, wo = figures["with_control"], figures["without_control"]
            table = {"caption": f"held-out drawings (n={args.n}, {args.combos} prompts, DDIM {args.steps} steps, "
                                f"CFG {args.cfg:g})",
                     "columns": ["", "IoU >= 0.8", "median IoU", "prompt right"],
                     "rows": [["with the control unit", f"{w['iou_ge_0_8']:.0%}", f"{w['median_iou']:.2f}",
                               f"{w['prompt_right']:.0%}"],
                              ["without (same prompts, seeds)", f"{wo['iou_ge_0_8']:.0%}", f"{wo['median_iou']:.2f}",
                               f"{wo['prompt_right']:.0%}"]]}
            write_result(args.publish, figures, seeds=[args.seed], threads=args.threads,
                         baseline="the same prompts and seeds without the control unit, same run",
                         settings={"n": args.n, "steps": args.steps, "cfg": args.cfg}, tables={"main": table})
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

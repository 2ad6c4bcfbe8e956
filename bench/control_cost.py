"""Cost of control units: per denoising step vs no unit, and of switching control models between jobs.

Measured in one run, same model, same torch threads, same settings (txt2img,
DDIM, fixed seed), jobs interleaved so drift hits every variant alike:

* per step: ``timings["denoise"] / steps`` of a job with no control unit (the
  baseline), with one ControlNet unit and with one T2I-Adapter unit (each at
  strength 1 over the whole schedule); ratios are medians against the
  baseline's median;
* switching: whole jobs (``Engine.run``'s total) with one ControlNet unit,
  alternating between two resident ControlNets (A, B, A, B...) vs the same one
  every job (A, A, ...); the difference is what a switch costs.  The store's
  load counter must not move while alternating (no reads); the first load of
  each model (reading it from disk) is reported separately.

The control models are random ones of the base model's shape
(``tooling/tiny_model.py``): a control unit's cost depends on its layers, not on
its weights.  With no ``--model`` the shipped starter (64 px) is used - the
figures are for that small UNet, where a ControlNet (a copy of the encoder
half) is a large share of the work; say so when quoting them.

Usage: python bench/control_cost.py [--model DIR] [--runs 15] [--steps 20] [--threads 1] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from bench_home import temp_engine  # bench/ is on sys.path when a benchmark runs as a script
from results_io import write_result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=0, help="picture side (default: the model's native size)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--publish", default="", help="write bench/results/<name>.json (e.g. control_cost)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    work, engine, model = temp_engine("impasto-bench-control-", args.model)
    try:
        from impasto.backend.tooling.tiny_model import build_tiny_controlnet, build_tiny_t2i_adapter
        from impasto.protocol.messages import ControlUnit, Generate, Image

        ctl = work / "models" / "controlnet"
        build_tiny_controlnet(ctl / "cn-a", model, seed=1, controls="scribble")
        build_tiny_controlnet(ctl / "cn-b", model, seed=2, controls="scribble")
        build_tiny_t2i_adapter(ctl / "t2i", model, seed=3, controls="scribble")
        name = model.name
        loaded = engine.model(name)
        size = args.size or loaded.entry.native_size
        drawing = np.zeros((size, size, 4), np.uint8)
        drawing[size // 4: 3 * size // 4, size // 3: size // 3 + max(2, size // 8)] = 255

        def job(units):
            return engine.run(Generate(job="b", prompt="a red circle on a blue background", model=name,
                                       width=size, height=size, steps=args.steps, seed=args.seed, sampler="ddim",
                                       control=units))

        def unit(model_name):
            return [ControlUnit("scribble", Image(size, size, drawing.tobytes()), model_name, 1.0)]

        variants = {"none": [], "controlnet": unit("cn-a"), "t2i_adapter": unit("t2i")}
        first_load = {}
        for key, units in variants.items():          # warm-up (and the first load of each control model)
            job(units)
        job(unit("cn-b"))
        first_load = {k: round(v, 4) for k, v in engine.controls.load_seconds.items()}
        per_step = {k: [] for k in variants}
        for _ in range(args.runs):
            for key, units in variants.items():
                r = job(units)
                per_step[key].append(r.timings["denoise"] / r.steps_run)
        loads_before = engine.controls.loads
        same, alternating = [], []
        for i in range(args.runs):
            same.append(job(unit("cn-a")).timings["total"])
            alternating.append(job(unit("cn-a" if i % 2 else "cn-b")).timings["total"])
        loads_during_switching = engine.controls.loads - loads_before

        med = {k: statistics.median(v) for k, v in per_step.items()}
        figures = {
            "model": name, "size": size, "steps": args.steps, "runs": args.runs,
            "per_step_median_s": {k: round(v, 6) for k, v in med.items()},
            "per_step_ratio_vs_none": {k: round(v / med["none"], 3) for k, v in med.items()},
            "job_median_s_same_controlnet": round(statistics.median(same), 6),
            "job_median_s_alternating_controlnets": round(statistics.median(alternating), 6),
            "switch_cost_s": round(statistics.median(alternating) - statistics.median(same), 6),
            "switch_cost_ratio": round(statistics.median(alternating) / statistics.median(same), 3),
            "loads_during_switching": loads_during_switching,
            "first_load_s": first_load,
            "raw_per_step_s": {k: [round(x, 6) for x in v] for k, v in per_step.items()},
            "raw_job_s": {"same": [round(x, 6) for x in same], "alternating": [round(x, 6) for x in alternating]},
            "device": loaded.choice.describe(),
        }
        print(json.dumps({k: v for k, v in figures.items() if not k.startswith("raw")}, indent=2))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        if args.publish:
            rows = [[k, f"{med[k] * 1000:.2f}", f"{med[k] / med['none']:.2f}x"] for k in variants]
            switch_rows = [
                ["same ControlNet every job", f"{statistics.median(same) * 1000:.1f}", "1.00x"],
                ["alternating two resident ControlNets", f"{statistics.median(alternating) * 1000:.1f}",
                 f"{statistics.median(alternating) / statistics.median(same):.2f}x"],
            ]
            write_result(args.publish, figures, seeds=[args.seed], threads=args.threads,
                         baseline="the same txt2img job with no control unit (per step) / with the same "
                                  "ControlNet every job (switching), interleaved in the same run",
                         settings={"model": name, "size": size, "steps": args.steps, "runs": args.runs,
                                   "sampler": "ddim", "device": figures["device"]},
                         tables={
                             "per_step": {"caption": f"one control unit per denoising step ({name}, {size} px, "
                                                     f"{args.steps} steps, median of {args.runs})",
                                          "columns": ["control", "ms / step", "vs none"], "rows": rows},
                             "switch": {"caption": f"switching control models between jobs (whole job, median of "
                                                   f"{args.runs}; loads while switching: {loads_during_switching})",
                                        "columns": ["jobs", "ms / job", "vs same"], "rows": switch_rows},
                         })
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Concept switch time vs one generation (target: a switch costs <= 5% of a generation).

A switch is what :func:`impasto.backend.engine.concepts.activate` does between two
jobs that use different concepts whose adapters are already resident: look the
concepts up in the library, ``set_adapter`` + ``set_scale`` on every LoRA layer.
Measured in one run on the same model:

* switch: ``activate`` alternating concept A (weight 0.8) and concept B (0.8);
* first use of a concept: reading its file and injecting the adapter (once per model);
* one generation (txt2img through ``Engine.run``, DDIM) with no concept, with A
  (same concept as the previous job: no switch) and alternating A/B (a switch each job).

Concepts are rank-8 LoRAs on every UNet attention projection (to_q/k/v/out) with random
weights: the switch cost depends on the number of LoRA layers, not on their values.

Usage: python bench/concept_switch.py [--model DIR] [--runs 20] [--steps 20] [--size 64] [--json out.json]
With no --model: the starter model if installed, else the tiny test model.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from bench_home import temp_engine  # bench/ is on sys.path when a benchmark runs as a script


def random_concept(unet, name: str, seed: int, rank: int = 8):
    from impasto.backend.concepts.library import ConceptLibrary, new_meta

    g = torch.Generator().manual_seed(seed)
    t = {}
    for n, m in unet.named_modules():
        base = getattr(m, "base_layer", m)
        if n.endswith(("to_q", "to_k", "to_v", "to_out.0")) and isinstance(base, torch.nn.Linear):
            t[f"unet.{n}.lora_A.weight"] = torch.randn(rank, base.in_features, generator=g) * 0.05
            t[f"unet.{n}.lora_B.weight"] = torch.randn(base.out_features, rank, generator=g) * 0.05
    return ConceptLibrary().save(name, t, new_meta(trigger="zwx", rank=rank), replace=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    work, engine, model = temp_engine("impasto-bench-switch-", args.model)
    from impasto.backend.concepts import adapters
    from impasto.backend.engine import JobHooks
    from impasto.backend.engine import concepts as seam
    from impasto.protocol.messages import Generate

    loaded = engine.model(model.name)
    random_concept(loaded.base.unet, "A", 1)
    random_concept(loaded.base.unet, "B", 2)

    t0 = time.perf_counter()
    seam.activate(engine, loaded, [("A", 0.8)], JobHooks())
    first_a = time.perf_counter() - t0
    t0 = time.perf_counter()
    seam.activate(engine, loaded, [("B", 0.8)], JobHooks())
    first_b = time.perf_counter() - t0
    layers = len(adapters.tuner_layers(loaded.base.unet))

    switches = []
    for i in range(args.runs * 5):
        name = "A" if i % 2 == 0 else "B"
        t0 = time.perf_counter()
        seam.activate(engine, loaded, [(name, 0.8)], JobHooks())
        switches.append(time.perf_counter() - t0)

    def generate(concepts):
        req = Generate(job="b", prompt="a red zwx shape on a blue background", seed=5, steps=args.steps,
                       width=args.size, height=args.size, sampler="ddim", model=model.name, concepts=concepts)
        t0 = time.perf_counter()
        engine.run(req)
        return time.perf_counter() - t0

    generate([])  # warm-up
    plain, same, alternating = [], [], []
    for i in range(args.runs):  # interleaved: machine noise hits all three alike
        plain.append(generate([]))
        same.append(generate([("A", 0.8)]))
        alternating.append(generate([("A" if i % 2 == 0 else "B", 0.8)]))
    med = statistics.median
    report = {
        "model": model.name, "device": loaded.choice.describe(), "threads": args.threads,
        "generation": f"{args.size}x{args.size}, {args.steps} DDIM steps",
        "lora_layers": layers, "runs": args.runs,
        "switch_s_median": round(med(switches), 6),
        "first_use_s": [round(first_a, 4), round(first_b, 4)],
        "generation_no_concept_s_median": round(med(plain), 5),
        "generation_same_concept_s_median": round(med(same), 5),
        "generation_switching_each_job_s_median": round(med(alternating), 5),
        "switch_vs_generation_percent": round(100 * med(switches) / med(same), 3),
        "torch": torch.__version__,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    shutil.rmtree(work, ignore_errors=True)  # models are symlinked, nothing of the caller's is inside
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

"""What folding a live job's LoRA into the weights saves: the engine's own time for a live job.

A live job on the starter runs its shipped LCM-LoRA (LCM, 4 steps, CFG 1, denoising
strength 0.5, 128 px).  Unfused, peft runs a second, low-rank path through each of the
LoRA's 129 layers; a live job folds the LoRA into the base weights instead
(``backend/concepts/adapters.py``) and keeps it folded while live jobs follow.

Four kinds of job, in blocks (one switching job first, not timed, then ``--repeats``
timed), the blocks interleaved ``--rounds`` times in one process (same engine, same
threads, same request apart from what is named):

* **live, LoRA fused** - the job live painting sends;
* **LoRA unfused** - the same request without ``live`` (the baseline: how it ran before);
* **no LoRA** - the same request with the LoRA off (weight 0), without ``live``: the floor;
* **no LoRA, live** - the same, live (the live path's own cost: the prompt cache).

Plus the cost of the switch itself: folding in (``set_active(..., fuse=True)``) and
putting the model's own weights back (``unfuse``), each timed ``--repeats`` times.

Engine time only (``Engine.run`` in this process): no daemon, no transfer, no debounce -
``bench/live_latency.py`` measures the whole stroke-to-paint path.

    python bench/live_fuse.py [--rounds 6] [--repeats 4] [--threads 1]
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)
    from impasto.backend.concepts import adapters
    from impasto.backend.engine import Engine, JobHooks
    from impasto.backend.engine.images import to_wire
    from impasto.protocol.messages import Generate

    engine = Engine(models_dir=Path(tempfile.mkdtemp()))   # an empty models folder: the shipped starter
    starter = next(e for e in engine.models() if e.name == "starter")
    lora = (starter.live or {}).get("concept")
    if not lora:
        raise SystemExit("the starter has no few-step LoRA shipped beside it (backend/assets)")
    side = int(starter.native_size)
    rng = np.random.default_rng(args.seed)
    canvas = to_wire(Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).convert("RGBA"))

    def job(live: bool, weight: float) -> Generate:
        return Generate(job="b", model="starter", prompt="a big red circle at the top on a blue background",
                        init_image=canvas, strength=0.5, steps=4, sampler="lcm", cfg_scale=1.0, seed=args.seed,
                        live=live, concepts=[(lora, weight)])

    kinds = {"live, LoRA fused": job(True, 1.0), "LoRA unfused (baseline)": job(False, 1.0),
             "no LoRA (the floor)": job(False, 0.0), "no LoRA, live": job(True, 0.0)}
    times = {k: [] for k in kinds}
    stages = {k: {"denoise": [], "first_step": []} for k in kinds}
    for req in kinds.values():          # warm every path once
        engine.run(req, JobHooks())
    for _ in range(args.rounds):
        for name, req in kinds.items():
            engine.run(req, JobHooks())  # the switch into this kind: not timed
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                res = engine.run(req, JobHooks())
                times[name].append(time.perf_counter() - t0)
                for s in stages[name]:
                    stages[name][s].append(res.timings.get(s, float("nan")))

    loaded = engine.model("starter")
    engine.run(kinds["live, LoRA fused"], JobHooks())
    st = adapters.state_for(loaded)
    layers = len(st.fused_saved)
    weights = dict(st.active)
    fuse_ms, unfuse_ms = [], []
    for _ in range(args.repeats * 3):
        t0 = time.perf_counter()
        adapters.unfuse(loaded)
        t1 = time.perf_counter()
        adapters.set_active(loaded, weights, fuse=True)
        t2 = time.perf_counter()
        unfuse_ms.append((t1 - t0) * 1000)
        fuse_ms.append((t2 - t1) * 1000)

    ms = lambda v: round(statistics.median(v) * 1000, 1)  # noqa: E731
    med = {k: ms(v) for k, v in times.items()}
    base = med["LoRA unfused (baseline)"]
    rows = [[k, f"{med[k]:.1f}", f"{ms(stages[k]['denoise']):.1f}", f"{med[k] / base:.2f}"] for k in kinds]
    figures = {
        "median_ms": med,
        "median_denoise_ms": {k: ms(stages[k]["denoise"]) for k in kinds},
        "fused_over_unfused": round(med["live, LoRA fused"] / base, 3),
        "fused_over_no_lora": round(med["live, LoRA fused"] / med["no LoRA (the floor)"], 3),
        "fuse_ms_median": round(statistics.median(fuse_ms), 2),
        "unfuse_ms_median": round(statistics.median(unfuse_ms), 2),
        "fused_layers": layers, "lora": lora, "size": side,
        "raw_ms": {k: [round(x * 1000, 2) for x in v] for k, v in times.items()},
    }
    print(f"fused {med['live, LoRA fused']} ms, unfused {base} ms (x{figures['fused_over_unfused']}), "
          f"no LoRA {med['no LoRA (the floor)']} ms; fuse {figures['fuse_ms_median']} ms, "
          f"unfuse {figures['unfuse_ms_median']} ms on {layers} layers")
    if not args.no_write:
        results_io.write_result(
            "live_fuse", figures, seeds=[args.seed],
            baseline="the same request without live (the LoRA unfused: peft's adapter path), same process and run",
            settings={"rounds": args.rounds, "repeats": args.repeats, "steps": 4, "sampler": "lcm", "cfg": 1.0,
                      "strength": 0.5, "size": side},
            tables={"main": {
                "caption": (f"Engine time of one 4-step live job on the starter ({side} px, LCM, CFG 1, strength "
                            f"0.5) with its LCM-LoRA ({layers} layers), medians of {args.rounds * args.repeats} "
                            f"jobs per kind, kinds interleaved in blocks; ratio to the unfused job. Folding in "
                            f"takes {figures['fuse_ms_median']} ms once per stream, putting the model's own "
                            f"weights back {figures['unfuse_ms_median']} ms."),
                "columns": ["job", "median ms", "denoise ms", "vs unfused"], "rows": rows}})
    return 0


if __name__ == "__main__":
    sys.exit(main())

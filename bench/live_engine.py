"""Where a live job's engine time goes, and what the fast autoencoder saves.

One live job on the starter (its LCM-LoRA folded in, LCM, 4 steps, CFG 1, denoising
strength 0.5; a 512 px canvas diffused at the starter's 128 px and scaled back) split
into the engine's stages (``Result.timings``: prepare = flatten and scale the canvas
down, encode, denoise, decode, resize = scale the picture back up), for three kinds
of job in the same process, interleaved in blocks (one switching job first, not
timed, then ``--repeats`` timed), at each thread count in ``--threads``:

* **live** - what live painting sends: the fast autoencoder (``fast_vae`` unset: on
  for live jobs; on the starter its trained fast encoder and preview decoder,
  ``backend/engine/fast_vae.py``);
* **live, full VAE** - the same job with ``fast_vae: false`` (the baseline: how live
  jobs ran before);
* **live, float32 decode** - the live job with the VAE's decode left in float32
  (``IMPASTO_BF16_DECODE=off``; ``live`` decodes in bfloat16 where that measured
  faster on this CPU, ``backend/engine/vae_bf16.py``);
* **live, eager UNet** - the live job with ``IMPASTO_LIVE_COMPILE=0``: its UNet
  called as in every other job (``live`` calls a traced copy, the default,
  ``backend/engine/live_unet.py``, timed once the copy is traced);
* **live, compiled UNet** (with ``--live-compile``) - the live job with
  ``IMPASTO_LIVE_COMPILE=1``: its UNet calls through the compiled copy
  (``backend/engine/live_unet.py``), timed once the copy is compiled;
* **live, diffusers' device lookup** - the live job with the pipeline's
  ``_execution_device`` left to diffusers (it walks every sub-module of every
  component per call; ``pipelines.pin_execution_device`` fixes it when nothing is
  offloaded).

Engine time only (``Engine.run`` in this process): no daemon, no transfer, no debounce -
``bench/live_latency.py`` measures the whole stroke-to-paint path.  Also reported: how far
the live picture is from the full-VAE picture of the same job (mean absolute difference,
0-255, over ``--canvases`` canvases: a scene of the starter's domain with brush strokes).

    python bench/live_engine.py [--rounds 6] [--repeats 4] [--threads 1 2] [--canvases 8] [--live-compile]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_io  # noqa: E402  (first: the load average at the start)

STAGES = ("prepare", "encode", "denoise", "decode", "resize")
PROMPT = "a big red circle at the top on a blue background"


def canvases(count: int, side: int, seed: int):
    """Live canvases: starter-domain scenes (held-out triples) with brush strokes, as 512 px RGBA wire images."""
    import numpy as np
    from PIL import Image

    from impasto.backend.engine.images import to_wire
    from impasto.backend.tooling import train_fast_encoder as tf

    pix = tf.pictures(None, count, seed, held_out=True)     # (N, 3, 128, 128) in [-1, 1], half stroked
    arr = ((pix.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    return [to_wire(Image.fromarray(a).resize((side, side), Image.LANCZOS).convert("RGBA")) for a in arr]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--canvases", type=int, default=8)
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--live-compile", action="store_true", help="add the compiled live UNet (IMPASTO_LIVE_COMPILE)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from impasto.backend.engine import Engine, JobHooks
    from impasto.protocol.messages import Generate

    engine = Engine(models_dir=Path(tempfile.mkdtemp()))   # an empty models folder: the shipped starter
    starter = next(e for e in engine.models() if e.name == "starter")
    lora = (starter.live or {}).get("concept")
    if not lora:
        raise SystemExit("the starter has no few-step LoRA shipped beside it (backend/assets)")
    pics = canvases(args.canvases, args.side, 4321)

    def job(canvas, fast=None) -> Generate:
        return Generate(job="b", model="starter", prompt=PROMPT, init_image=canvas, strength=0.5, steps=4,
                        sampler="lcm", cfg_scale=1.0, seed=args.seed, live=True, fast_vae=fast,
                        concepts=[(lora, 1.0)])

    loaded = engine.model("starter")
    pipe = loaded.img2img
    pinned = type(pipe)
    lookup = pinned.__mro__[1] if pinned.__name__ == pinned.__mro__[1].__name__ else pinned
    kinds = {"live": (None, pinned, "auto"), "live, full VAE (baseline)": (False, pinned, "auto"),
             "live, float32 decode": (None, pinned, "off"),
             "live, diffusers' device lookup": (None, lookup, "auto"),
             "live, eager UNet": (None, pinned, "auto")}

    if args.live_compile:
        kinds["live, compiled UNet"] = (None, pinned, "auto")

    def use(kind):
        fast, cls, bf16 = kinds[kind]
        pipe.__class__ = cls
        os.environ["IMPASTO_BF16_DECODE"] = bf16
        os.environ["IMPASTO_LIVE_COMPILE"] = {"live, compiled UNet": "1", "live, eager UNet": "0"}.get(kind, "trace")
        return fast

    built_s = {}

    def build_live(threads, kind="live, compiled UNet", how="compile", word="compiled"):
        """Trace or compile the live UNet (a compiled graph at this thread count: it is guarded on it), as the
        daemon does."""
        loaded.__dict__.get("_live_unets", {}).pop(how, None)
        t0 = time.perf_counter()
        fast = use(kind)
        while engine.run(job(pics[0], fast), JobHooks()).info.get("live_unet") != word:
            if time.perf_counter() - t0 > 600:
                raise SystemExit(f"the live UNet was not {word} in 10 minutes")
            time.sleep(0.5)
        built_s.setdefault(how, {})[str(threads)] = round(loaded._live_unet.compile_seconds, 2)

    # how far the live picture is from the full-VAE one (same job, same latents up to the encoder)
    use("live")
    diffs = []
    for canvas in pics:
        a = engine.run(job(canvas), JobHooks())
        b = engine.run(job(canvas, False), JobHooks())
        fa = np.frombuffer(a.images[0].data, np.uint8).astype(np.float64)
        fb = np.frombuffer(b.images[0].data, np.uint8).astype(np.float64)
        diffs.append(float(np.abs(fa - fb).mean() * 4 / 3))   # RGB only: alpha is 255 in both
    vae_used = a.info.get("vae", "")

    figures = {"threads": {}, "live_vs_full_vae_levels": {"median": round(statistics.median(diffs), 2),
                                                          "max": round(max(diffs), 2), "canvases": len(diffs)},
               "live_vae": vae_used, "size": args.side}
    figures["live_unet_build_s"] = built_s
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        build_live(threads, "live", "trace", "traced")
        if args.live_compile:
            build_live(threads)
        times = {k: [] for k in kinds}
        stages = {k: {s: [] for s in STAGES} for k in kinds}
        canvas = pics[0]
        for name in kinds:                     # warm every path at this thread count
            engine.run(job(canvas, use(name)), JobHooks())
        for r in range(args.rounds):
            for name in kinds:
                fast = use(name)
                engine.run(job(pics[r % len(pics)], fast), JobHooks())   # the switch into this kind: not timed
                for i in range(args.repeats):
                    req = job(pics[(r * args.repeats + i) % len(pics)], fast)
                    t0 = time.perf_counter()
                    res = engine.run(req, JobHooks())
                    times[name].append(time.perf_counter() - t0)
                    for s in STAGES:
                        stages[name][s].append(res.timings.get(s, float("nan")))
        use("live")
        ms = lambda v: round(statistics.median(v) * 1000, 1)  # noqa: E731
        med = {k: ms(v) for k, v in times.items()}
        base = med["live, full VAE (baseline)"]
        figures["threads"][str(threads)] = {
            "median_ms": med, "stages_ms": {k: {s: ms(v) for s, v in stages[k].items()} for k in kinds},
            "live_over_full_vae": round(med["live"] / base, 3),
            "raw_ms": {k: [round(x * 1000, 2) for x in v] for k, v in times.items()}}
        for k in kinds:
            st = figures["threads"][str(threads)]["stages_ms"][k]
            rows.append([str(threads), k, f"{med[k]:.1f}", *[f"{st[s]:.1f}" for s in STAGES], f"{med[k] / base:.2f}"])
        print(f"threads {threads}: " + ", ".join(f"{k} {v} ms" for k, v in med.items()))
    print(f"live vs full-VAE picture: median {figures['live_vs_full_vae_levels']['median']} levels "
          f"(max {figures['live_vs_full_vae_levels']['max']}) over {len(diffs)} canvases; live: {vae_used}")
    if not args.no_write:
        results_io.write_result(
            "live_engine", figures, seeds=[args.seed, 4321],
            baseline="the same live job with fast_vae false (the full VAE encodes and decodes), same process, "
                     "run and threads",
            threads=None,
            settings={"rounds": args.rounds, "repeats": args.repeats, "threads": args.threads, "steps": 4,
                      "sampler": "lcm", "cfg": 1.0, "strength": 0.5, "canvas": args.side, "diffused": 128},
            tables={"main": {
                "caption": (f"Engine time of one live job on the starter ({args.side} px canvas diffused at 128 px, "
                            f"its LCM-LoRA folded in, LCM 4 steps, CFG 1, strength 0.5), medians of "
                            f"{args.rounds * args.repeats} jobs per kind and thread count, kinds interleaved in "
                            f"blocks, over {len(pics)} canvases (held-out scenes, half with brush strokes); stages "
                            f"from the result's timings; ratio to the full-VAE job at the same threads. The live "
                            f"picture is {figures['live_vs_full_vae_levels']['median']} levels (0-255, median; max "
                            f"{figures['live_vs_full_vae_levels']['max']}) from the full-VAE picture of the same "
                            f"job. Live: {vae_used}."),
                "columns": ["threads", "job", "median ms", *[f"{s} ms" for s in STAGES], "vs full VAE"],
                "rows": rows}})
    return 0


if __name__ == "__main__":
    sys.exit(main())

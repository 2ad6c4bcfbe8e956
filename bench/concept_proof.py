"""Proof on the starter model: a held-out shape (the star) learned as a concept from 5 pictures.

The starter model never saw a star.  This script

1. renders 5 star pictures of the starter's domain (``backend/starter/domain.py``)
   in 5 colour pairs, captioned ``"a <fg> <trigger> shape on a <bg> background"``
   (DreamBooth: trigger + the class noun "shape" the starter knows);
2. trains the concept through the engine exactly as the daemon does (``Train``
   job, prior preservation on), with the artist defaults unless told otherwise,
   and reports the CPU training time;
3. judges generated pictures with the starter's procedural detector
   (``backend/starter/detector.py``; since 2026-12-01 its shape is the strict per-family
   judges of ``backend/starter/judges.py``, before that a solidity rule that called any
   concave blob a star), over all 56 colour pairs (the 5 training pairs included; the
   held-out-pairs, fresh-seeds version with intervals is ``bench/concept_shapes.py``):

   * **with the trigger** (``"a red <trigger> shape on a blue background"``, concept
     at weight 1): share of stars *in the asked colours* (a noisy picture has a
     concave blob the detector would also call a star) - target >= 90%;
   * **without the trigger**, concept still on (``"a red shape on a blue background"``):
     share of stars - target <= 10% (prior preserved);
   * **the class's other prompts**, concept on vs off (``"a red circle on a blue
     background"`` ...): share judged fully right (shape, colour, background) -
     should stay where the base model is;
   * the trigger prompt **without** the concept: share of stars (the base model's
     own rate, ~0: the concept is what makes the star).

Usage: python bench/concept_proof.py [--model DIR] [--steps 400] [--lr 1e-4] [--rank 8]
       [--method lora] [--trigger zwx] [--text-encoder] [--seeds 1] [--pairs N] [--threads 2] [--out DIR]
       (research knobs override the trainer's constants: --distill --distill-keep --distill-rows ...)
Writes ``proof.json`` and ``grid.png`` (rows: training pictures, with trigger, without trigger, trigger
prompt without the concept, other shapes' prompts with the concept) to --out.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from bench_home import temp_engine  # bench/ is on sys.path when a benchmark runs as a script

RESEARCH_KNOBS = {"prior_weight": "PRIOR_LOSS_WEIGHT", "trigger_lr_scale": "TRIGGER_LR_SCALE",
                  "distill": "NEIGHBOUR_DISTILL", "distill_candidates": "NEIGHBOUR_CANDIDATES",
                  "distill_keep": "NEIGHBOUR_DISTILL_KEEP", "distill_rows": "NEIGHBOUR_DISTILL_ROWS",
                  "distill_bank": "NEIGHBOUR_DISTILL_BANK", "neighbour_pictures": "NEIGHBOUR_PROMPTS"}
TRAIN_PAIRS = [("red", "blue"), ("yellow", "black"), ("white", "green"), ("cyan", "magenta"), ("blue", "yellow")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="default: the installed starter model")
    ap.add_argument("--steps", type=int, default=None, help="default: the Train message's (artist default)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--rank", type=int, default=None)
    ap.add_argument("--method", default="lora", choices=("lora", "custom_diffusion"))
    ap.add_argument("--text-encoder", action=argparse.BooleanOptionalAction, default=None,
                    help="also a text-encoder LoRA (default: the model's recommendation)")
    ap.add_argument("--no-trigger-embedding", action="store_true", help="don't learn the trigger's own embedding")
    ap.add_argument("--no-norm-cap", action="store_true", help="train.TRIGGER_NORM_CAP = False (research)")
    ap.add_argument("--trigger-lr-scale", type=float, default=None, help="override train.TRIGGER_LR_SCALE (research)")
    ap.add_argument("--class-images", type=int, default=None)
    ap.add_argument("--prior-weight", type=float, default=None, help="override train.PRIOR_LOSS_WEIGHT (research)")
    ap.add_argument("--distill", type=float, default=None, help="override train.NEIGHBOUR_DISTILL (research)")
    ap.add_argument("--distill-candidates", type=int, default=None, help="override train.NEIGHBOUR_CANDIDATES")
    ap.add_argument("--neighbour-pictures", type=int, default=None, help="override train.NEIGHBOUR_PROMPTS")
    ap.add_argument("--distill-rows", type=float, default=None, help="override train.NEIGHBOUR_DISTILL_ROWS")
    ap.add_argument("--distill-bank", type=int, default=None, help="override train.NEIGHBOUR_DISTILL_BANK")
    ap.add_argument("--distill-keep", type=int, default=None, help="override train.NEIGHBOUR_DISTILL_KEEP")
    ap.add_argument("--trigger", default="zwx")
    ap.add_argument("--template", default="a {fg} {trigger} shape on a {bg} background",
                    help="caption and with-trigger prompt ({fg}, {bg}, {trigger})")
    ap.add_argument("--seeds", type=int, default=1, help="pictures per prompt")
    ap.add_argument("--pairs", type=int, default=0, help="evaluate on the first N colour pairs (default: all 56)")
    ap.add_argument("--gen-steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("proof-out"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    setup = temp_engine("impasto-proof-", args.model, tiny_fallback=False)
    if setup is None:
        print("the starter model is not installed (backend/assets/starter/): nothing to prove on", file=sys.stderr)
        return None
    work, engine, model = setup
    from impasto.backend.engine.images import from_wire, to_wire
    from impasto.backend.starter import detector, domain
    from impasto.protocol.messages import Generate, Train

    from impasto.backend.concepts import train as train_mod

    # research knobs: the trainer's module constants, for this process only
    for arg, constant in RESEARCH_KNOBS.items():
        if getattr(args, arg) is not None:
            setattr(train_mod, constant, getattr(args, arg))
    if args.no_norm_cap:
        train_mod.TRIGGER_NORM_CAP = False
    loaded = engine.model(model.name)
    size = loaded.entry.native_size or 64
    trig = args.trigger

    pictures = [domain.render("star", fg, bg, size, 100 + i) for i, (fg, bg) in enumerate(TRAIN_PAIRS)]
    def with_trigger(fg, bg):
        return args.template.format(fg=fg, bg=bg, trigger=trig)

    captions = [with_trigger(fg, bg) for fg, bg in TRAIN_PAIRS]
    defaults = Train()
    req = Train(job="proof", name="star", images=[to_wire(p) for p in pictures], captions=captions, trigger=trig,
                class_noun=domain.CLASS_NOUN, method=args.method,
                steps=args.steps or defaults.steps, learning_rate=args.lr or defaults.learning_rate,
                rank=args.rank or defaults.rank, train_text_encoder=args.text_encoder,
                trigger_embedding=not args.no_trigger_embedding,
                class_images=defaults.class_images if args.class_images is None else args.class_images,
                model=model.name, sample_every=0, checkpoint_every=0, preview=False)
    t0 = time.perf_counter()
    result = engine.run(req)
    wall = time.perf_counter() - t0
    print(f"trained in {wall:.1f} s: {result.timings}", file=sys.stderr)

    pairs = [(fg, bg) for fg in domain.COLOR_NAMES for bg in domain.COLOR_NAMES if fg != bg]
    if args.pairs:
        pairs = pairs[: args.pairs]
    seeds = list(range(1000, 1000 + args.seeds))

    def run(prompt, concepts, seed):
        r = engine.run(Generate(job="p", prompt=prompt, seed=seed, steps=args.gen_steps, cfg_scale=args.cfg,
                                width=size, height=size, sampler="ddim", model=model.name, concepts=concepts))
        return from_wire(r.images[0]).convert("RGB")

    concept = [("star", 1.0)]
    stats = {k: [0, 0] for k in ("with_trigger_star", "with_trigger_any_star", "with_trigger_colours",
                                 "without_trigger_star", "base_trigger_star", "other_on_right", "other_off_right",
                                 "other_on_star")}
    grid_with, grid_without, grid_base, grid_other = [], [], [], []
    t0 = time.perf_counter()
    for i, (fg, bg) in enumerate(pairs):
        for seed in seeds:
            img = run(with_trigger(fg, bg), concept, seed)
            d = detector.detect(img)
            # a star only counts with the asked colours: a noisy picture also has a concave "shape"
            stats["with_trigger_star"][0] += detector.judge(img, f"a {fg} star on a {bg} background")["all"]
            stats["with_trigger_any_star"][0] += d["shape"] == "star"
            stats["with_trigger_colours"][0] += d["fg"] == fg and d["bg"] == bg
            if len(grid_with) < 8:
                grid_with.append(img)
            img = run(f"a {fg} shape on a {bg} background", concept, seed)
            stats["without_trigger_star"][0] += detector.detect(img)["shape"] == "star"
            if len(grid_without) < 8:
                grid_without.append(img)
            img = run(with_trigger(fg, bg), [], seed)
            stats["base_trigger_star"][0] += detector.detect(img)["shape"] == "star"
            if len(grid_base) < 8:
                grid_base.append(img)
            shape = domain.SHAPES[i % len(domain.SHAPES)]
            other = domain.caption(shape, fg, bg)
            on = run(other, concept, seed)
            off = run(other, [], seed)
            stats["other_on_right"][0] += detector.judge(on, other)["all"]
            stats["other_off_right"][0] += detector.judge(off, other)["all"]
            stats["other_on_star"][0] += detector.detect(on)["shape"] == "star"
            if len(grid_other) < 8:
                grid_other.append(on)
            for k in stats:
                stats[k][1] += 1
    eval_s = time.perf_counter() - t0
    rate = {k: round(v[0] / v[1], 4) for k, v in stats.items()}
    report = {
        "model": model.name, "fingerprint": loaded.fingerprint, "device": loaded.choice.describe(),
        "threads": args.threads,
        "training": {"template": args.template, "trigger": trig, "method": req.method, "steps": result.steps_run,
                     "learning_rate": result.info["concept"]["learning_rate"], "rank": result.info["concept"]["rank"],
                     "text_encoder": result.info["concept"]["text_encoder"], "trigger_embedding": req.trigger_embedding,
                     "trigger_lr_scale": train_mod.TRIGGER_LR_SCALE, "trigger_norm_cap": train_mod.TRIGGER_NORM_CAP, "prior_loss_weight": train_mod.PRIOR_LOSS_WEIGHT,
                     "neighbour_distill": train_mod.NEIGHBOUR_DISTILL,
                     "neighbour_candidates": train_mod.NEIGHBOUR_CANDIDATES,
                     "neighbour_distill_keep": train_mod.NEIGHBOUR_DISTILL_KEEP,
                     "neighbour_distill_rows": train_mod.NEIGHBOUR_DISTILL_ROWS,
                     "neighbour_distill_bank": train_mod.NEIGHBOUR_DISTILL_BANK,
                     "neighbour_pictures": train_mod.NEIGHBOUR_PROMPTS,
                     "class_images": req.class_images, "pictures": 5,
                     "resolution": size, "batch": result.info.get("batch"),
                     "train_s": result.timings.get("train"), "class_images_s": result.timings.get("class_images"),
                     "total_job_s": round(wall, 2), "step_median_s": result.info.get("step_median_s"),
                     "final_loss": result.info.get("final_loss")},
        "evaluation": {"prompts_per_condition": stats["with_trigger_star"][1], "sampler": "ddim",
                       "steps": args.gen_steps, "cfg": args.cfg, "seconds": round(eval_s, 1)},
        "rates": rate,
        "targets": {
            "with_trigger_star>=0.90": rate["with_trigger_star"] >= 0.90,
            "without_trigger_star<=0.10": rate["without_trigger_star"] <= 0.10,
            "other_prompts_kept(within 10 points of base)": rate["other_on_right"] >= rate["other_off_right"] - 0.10,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "proof.json").write_text(json.dumps(report, indent=2))
    rows = [pictures, grid_with, grid_without, grid_base, grid_other]
    grid = Image.new("RGB", (size * 8, size * len(rows)), (128, 128, 128))
    for r, row in enumerate(rows):
        for c, im in enumerate(row[:8]):
            grid.paste(im.resize((size, size)), (c * size, r * size))
    grid.save(args.out / "grid.png")
    print(json.dumps(report, indent=2))
    shutil.rmtree(work, ignore_errors=True)  # models are symlinked, nothing of the caller's is inside
    return report


if __name__ == "__main__":
    rep = main()
    sys.exit(0 if rep and all(rep["targets"].values()) else 1)

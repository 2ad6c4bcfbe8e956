"""New shapes nobody tuned for: a concept benchmark over shape families the starter never saw.

For each family of ``families.HELD_OUT_FAMILIES`` (split before any tuning: the recipe
may be tuned on ``TUNE_FAMILIES`` only, the rest are reported):

1. 5 training pictures of the family in 5 colour pairs, rendered at the model's native
   size with the starter domain's one-object geometry (the 128 px scenes starter: a plain
   one-object scene, ``scenes.make_object``; the 64 px starter: its own law), captioned as
   docs/concepts.md tells an artist to caption for the starter:
   ``"a <fg> <trigger> shape on a <bg> background"``;
2. the concept is trained through the engine exactly as the daemon does (``Train`` job)
   **with the artist defaults** (no recipe flag at all: the model's ``concept_training``;
   ``--seed`` sets the training seed);
3. prompts in colour pairs never shown in training (the 5 training pairs are excluded),
   judged by the strict judges (``backend/starter/judges.py``):

   * **with the trigger**: share of pictures whose largest object is the family (strict
     detector) in the asked colours (foreground and background) - target >= 80 %;
   * **without the trigger** (``"a <fg> shape on a <bg> background"``, concept on): share
     of pictures the family's detector accepts - target <= 10 %;
   * **other shapes kept**: one plain prompt per colour pair of a family the starter was
     trained on (the scenes starter's 12 in turn, ``"a <fg> pentagon on a <bg> background"``,
     judged by ``scenes_eval.judge_scene``: family, colours, one object; the 64 px starter's
     circle/square/triangle by ``detector.judge``) with the concept on; the same prompts
     and seeds with no concept are the baseline, measured in the same run - target >= 90 %
     (also reported: of the pictures right without the concept, the share still right).

The recipe flags (``--steps --lr --rank --text-encoder --no-prior --class-images
--no-trigger-embedding --method --caption --unet-targets --neighbour-distill
--prior-weight``) are research: they are refused unless every
family asked for is a tune family.

Every rate comes with a 95 % Wilson interval.  Usage:

    python bench/concept_shapes.py [--model DIR] [--families heart,arrow] [--pairs 16] [--seeds 1]
        [--seed 0] [--gen-seed 1000] [--threads 1] [--json bench/results/concept_shapes.json]
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from bench_home import temp_engine  # bench/ is on sys.path when a benchmark runs as a script

TRAIN_PAIRS = [("red", "blue"), ("yellow", "black"), ("white", "green"), ("cyan", "magenta"), ("blue", "yellow")]
OTHER_SHAPES = ("circle", "square", "triangle")  # the 64 px starter's shapes
#: how docs/concepts.md tells an artist to caption pictures for the starter
CAPTION = "a {fg} {trigger} shape on a {bg} background"


def wilson(k: int, n: int, z: float = 1.96):
    """95 % Wilson score interval of k successes in n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (round(max(0.0, c - h), 4), round(min(1.0, c + h), 4))


def eval_pairs(n: int):
    """``n`` colour pairs never used for training, spread over all foreground colours."""
    from impasto.backend.starter.domain import COLOR_NAMES

    pairs = [(fg, bg) for k in range(1, len(COLOR_NAMES)) for fg in COLOR_NAMES
             for bg in [COLOR_NAMES[(COLOR_NAMES.index(fg) + k) % len(COLOR_NAMES)]]]
    pairs = [p for p in pairs if p not in TRAIN_PAIRS]
    return pairs[:n] if n else pairs


def domain_of(model: Path, native_size: int) -> str:
    """"scenes" for the richer 128 px starter (its impasto.json says so), else "shapes" (the 64 px one)."""
    from impasto.backend.engine.model_card import card_block

    dom = card_block(model, "training").get("domain")
    if dom in ("scenes", "shapes"):
        return dom
    from impasto.backend.starter.scenes import NATIVE_SIZE

    return "scenes" if native_size == NATIVE_SIZE else "shapes"


def render_family(family: str, fg: str, bg: str, size: int, seed: int, domain: str = None) -> Image.Image:
    """One picture of a family with the starter domain's one-object geometry.

    ``domain`` "scenes" (default at 128 px): a plain one-object scene of the richer starter
    (``scenes.make_object`` with no size and place words: radius 0.16-0.30 of the side,
    anywhere, +-15 deg), the geometry its "a red pentagon on a blue background" captions
    were trained on; "shapes" (default otherwise): the 64 px starter's law (size, place, +-15 deg).
    """
    from impasto.backend.starter import domain as D
    from impasto.backend.starter import families as FAM
    from impasto.backend.starter import scenes as SC

    g = np.random.default_rng(seed)
    if (domain or ("scenes" if size == SC.NATIVE_SIZE else "shapes")) == "scenes":
        return SC.render(SC.Scene(bg, [SC.make_object(family, fg, None, None, g)]), size)
    cx, cy, r, rot = D.sample_geometry("triangle", g)  # the domain's size/position/rotation law
    if family in FAM.NO_ROTATION:
        rot = 0.0
    S = size * 4
    img = Image.new("RGB", (S, S), D.COLORS[bg])
    FAM.draw(ImageDraw.Draw(img), family, cx * S, cy * S, r * S, rot, D.COLORS[fg], D.COLORS[bg])
    return img.resize((size, size), Image.BOX)


def other_prompts(pairs, domain: str):
    """(family, fg, bg) of the "other shapes kept" prompts: one per colour pair, the families the
    starter was trained on in turn (12 for the scenes starter, circle/square/triangle for the 64 px
    one).  On the scenes starter a triple held out of its training moves on to the next family."""
    from impasto.backend.starter import families as FAM
    from impasto.backend.starter import scenes as SC

    if domain != "scenes":
        return [(OTHER_SHAPES[i % 3], fg, bg) for i, (fg, bg) in enumerate(pairs)]
    train = set(SC.train_triples())
    fams = FAM.TRAIN_FAMILIES
    out = []
    for i, (fg, bg) in enumerate(pairs):
        for k in range(len(fams)):
            f = fams[(i + k) % len(fams)]
            if (f, fg, bg) in train:
                break
        out.append((f, fg, bg))
    return out


def colours_right(img, fg: str, bg: str) -> bool:
    """The picture's background and its largest object's colour are the asked ones (no shape judged)."""
    from impasto.backend.starter import judges as J

    bgd, objs = J.find_objects(img)
    return bgd == bg and bool(objs) and objs[0].fg == fg


def save_grid(rows, size: int, path: Path) -> None:
    """One row per family: its 5 training pictures, 7 with the trigger, 4 without."""
    cols = max(len(r) for r in rows)
    grid = Image.new("RGB", (cols * size, len(rows) * size), (128, 128, 128))
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            grid.paste(im, (c * size, r * size))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def main(argv=None):
    from impasto.backend.starter import families as FAM

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="default: the installed starter model")
    ap.add_argument("--families", default=",".join(FAM.HELD_OUT_FAMILIES))
    ap.add_argument("--trigger", default="zwx")
    ap.add_argument("--pairs", type=int, default=16, help="evaluation colour pairs (0: all 51 not used in training)")
    ap.add_argument("--seeds", type=int, default=1, help="pictures per prompt")
    ap.add_argument("--seed", type=int, default=0, help="training seed (Train.seed)")
    ap.add_argument("--gen-seed", type=int, default=1000, help="first generation seed")
    ap.add_argument("--gen-steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--grid", type=Path, default=None, help="write a picture grid (PNG) here")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--save-dir", type=Path, default=None, help="keep every generated picture (PNG) here")
    # recipe research on the tune families only (default: none of these, i.e. the artist defaults)
    ap.add_argument("--steps", type=int, default=0, help="research: training steps (0: the model's)")
    ap.add_argument("--lr", type=float, default=0.0, help="research: learning rate (0: the model's)")
    ap.add_argument("--rank", type=int, default=0, help="research: LoRA rank (0: the model's)")
    ap.add_argument("--no-prior", action="store_true", help="research: no prior preservation")
    ap.add_argument("--text-encoder", choices=("model", "on", "off"), default="model",
                    help="research: text-encoder LoRA (model: the model's recommendation)")
    ap.add_argument("--class-images", type=int, default=0, help="research: class pictures (0: the default)")
    ap.add_argument("--no-trigger-embedding", action="store_true", help="research: no trigger embedding")
    ap.add_argument("--method", default="lora", choices=("lora", "custom_diffusion"), help="research: method")
    ap.add_argument("--caption", default=CAPTION, help="research: caption template ({fg}, {bg}, {trigger})")
    ap.add_argument("--unet-targets", default="",
                    help="research: the UNet layers a 'lora' concept trains, comma-separated module suffixes "
                         "(default: the model's concept_training.unet_layers, adapters.unet_targets; e.g. add conv1,conv2 for LoCon-style convolutions)")
    ap.add_argument("--neighbour-distill", type=float, default=None,
                    help="research: weight of the neighbour-distillation loss (default: concepts.train's)")
    ap.add_argument("--prior-weight", type=float, default=None,
                    help="research: weight of the prior-preservation loss (default: concepts.train's)")
    args = ap.parse_args(argv)
    if args.neighbour_distill is not None or args.prior_weight is not None:
        from impasto.backend.concepts import train as _train

        if args.neighbour_distill is not None:
            _train.NEIGHBOUR_DISTILL = args.neighbour_distill
        if args.prior_weight is not None:
            _train.PRIOR_LOSS_WEIGHT = args.prior_weight
    if args.unet_targets:
        from impasto.backend.concepts import adapters as _adapters

        targets = [t.strip() for t in args.unet_targets.split(",") if t.strip()]
        own = _adapters.unet_targets
        _adapters.unet_targets = lambda method, layers="attention": targets if method == "lora" else own(method, layers)
    torch.set_num_threads(args.threads)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    for f in families:
        if f not in FAM.HELD_OUT_FAMILIES:
            raise SystemExit(f"{f!r} is not a held-out family ({', '.join(FAM.HELD_OUT_FAMILIES)})")
    research = bool(args.steps or args.lr or args.rank or args.no_prior or args.text_encoder != "model"
                    or args.class_images or args.no_trigger_embedding or args.method != "lora"
                    or args.caption != CAPTION or bool(args.unet_targets)
                    or args.neighbour_distill is not None or args.prior_weight is not None)
    if research and not set(families) <= set(FAM.TUNE_FAMILIES):
        raise SystemExit("recipe research runs on the tune families only: " + ", ".join(FAM.TUNE_FAMILIES))
    setup = temp_engine("impasto-shapes-", args.model, tiny_fallback=False)
    if setup is None:
        print("the starter model is not installed: nothing to measure", file=sys.stderr)
        return None
    work, engine, model = setup
    from impasto.backend.engine.images import from_wire, to_wire
    from impasto.backend.starter import judges as J
    from impasto.backend.starter import scenes as SC
    from impasto.backend.starter import scenes_eval as SE
    from impasto.backend.starter.detector import analyse, judge
    from impasto.protocol.messages import Generate, Train

    loaded = engine.model(model.name)
    size = loaded.entry.native_size or 64
    domain = domain_of(model, size)
    pairs = eval_pairs(args.pairs)
    seeds = list(range(args.gen_seed, args.gen_seed + args.seeds))

    def gen(prompt, concepts, seed):
        r = engine.run(Generate(job="g", prompt=prompt, seed=seed, steps=args.gen_steps, cfg_scale=args.cfg,
                                width=size, height=size, sampler="ddim", model=model.name, concepts=concepts))
        return from_wire(r.images[0]).convert("RGB")

    ious = []

    def is_family(img, family, fg=None, bg=None):
        """The strict detector of ``family`` on the largest object (and, given, its colours)."""
        bgd, objs = J.find_objects(img)
        if not objs:
            return False
        o = objs[0]
        sc = J.scores(o.canon)
        if fg is not None:
            ious.append(round(sc[family], 3))
        if fg is not None and (o.fg != fg or bgd != bg):
            return False
        return J.decide(sc, family)

    def other_right(img, fam, fg, bg):
        """A plain prompt of a family the starter knows, judged fully (family, colours; one object on scenes)."""
        if domain == "scenes":
            return SE.judge_scene(img, SC.Scene(bg, [SC.Obj(fam, fg, None, None, 0.5, 0.5, 0.2, 0.0)]))["all"]
        return judge(img, f"a {fg} {fam} on a {bg} background")["all"]

    def keep(img, name):
        if args.save_dir:
            args.save_dir.mkdir(parents=True, exist_ok=True)
            img.save(args.save_dir / f"{name}.png")

    others = [((f, fg, bg), s) for f, fg, bg in other_prompts(pairs, domain) for s in seeds]
    t0 = time.perf_counter()
    base_ok = []
    for j, ((f, fg, bg), s) in enumerate(others):
        img = gen(f"a {fg} {f} on a {bg} background", [], s)
        base_ok.append(bool(other_right(img, f, fg, bg)))
        keep(img, f"base-other-{j}-{s}")
    base_right = sum(base_ok)
    base_s = time.perf_counter() - t0
    recipe_flags = {"steps": args.steps, "learning_rate": args.lr, "rank": args.rank,
                    "prior_preservation": not args.no_prior, "text_encoder": args.text_encoder,
                    "class_images": args.class_images or 20, "trigger_embedding": not args.no_trigger_embedding,
                    "method": args.method, "caption": args.caption, "unet_targets": args.unet_targets or "default",
                    "neighbour_distill": args.neighbour_distill, "prior_weight": args.prior_weight}
    report = {"bench": "concept_shapes", "command": "python bench/concept_shapes.py " + " ".join(argv or sys.argv[1:]),
              "machine": f"{platform.machine()} {platform.processor() or ''} CPU, shared, no GPU".strip(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch_threads": args.threads,
              "model": model.name, "model_dir": str(model), "fingerprint": loaded.fingerprint,
              "native_size": size, "domain": domain,
              "model_concept_training": dict(getattr(loaded.entry, "concept_training", {}) or {}),
              "trigger": args.trigger, "caption": args.caption, "train_pairs": TRAIN_PAIRS, "eval_pairs": len(pairs),
              "pictures_per_prompt": args.seeds, "train_seed": args.seed, "gen_seeds": seeds,
              "sampler": "ddim", "gen_steps": args.gen_steps, "cfg": args.cfg,
              "judge": "backend/starter/judges.py (strict per-family detectors)"
                       + ("; other shapes: scenes_eval.judge_scene (family, colours, one object)" if domain == "scenes"
                          else "; other shapes: detector.judge (shape, colours)"),
              "tune_families": list(FAM.TUNE_FAMILIES), "report_families": list(FAM.REPORT_FAMILIES),
              "research_flags": recipe_flags if research else None,
              "other_prompts": [f"a {fg} {f} on a {bg} background" for (f, fg, bg), _ in others],
              "baseline_other_right": {"k": base_right, "n": len(others), "rate": round(base_right / len(others), 4),
                                       "ci95": wilson(base_right, len(others)), "per_picture": base_ok},
              "baseline_seconds": round(base_s, 1), "seeds": seeds,
              "baseline": "the same prompts without the trigger, and the other shapes' prompts with the concept off "
                          "(same seeds, same run)",
              "families": {}}
    grid_rows = []
    for fam in families:
        pics = [render_family(fam, fg, bg, size, 100 + i, domain) for i, (fg, bg) in enumerate(TRAIN_PAIRS)]
        caps = [args.caption.format(fg=fg, bg=bg, trigger=args.trigger) for fg, bg in TRAIN_PAIRS]
        req = Train(job=f"c-{fam}", name=fam, images=[to_wire(p) for p in pics], captions=caps, trigger=args.trigger,
                    class_noun="shape", seed=args.seed, model=model.name, sample_every=0, checkpoint_every=0,
                    preview=False, steps=args.steps, learning_rate=args.lr, rank=args.rank,
                    prior_preservation=not args.no_prior, class_images=args.class_images or 20,
                    train_text_encoder={"model": None, "on": True, "off": False}[args.text_encoder],
                    trigger_embedding=not args.no_trigger_embedding, method=args.method)
        t0 = time.perf_counter()
        res = engine.run(req)
        wall = time.perf_counter() - t0
        concept = [(fam, 1.0)]
        k = {"with": 0, "without": 0, "other": 0, "with_any_colour": 0, "legacy": 0, "colours": 0}
        ious.clear()
        row_with, row_without = [], []
        t1 = time.perf_counter()
        n = 0
        for fg, bg in pairs:
            for s in seeds:
                img = gen(args.caption.format(fg=fg, bg=bg, trigger=args.trigger), concept, s)  # as captioned
                k["with"] += is_family(img, fam, fg, bg)
                k["with_any_colour"] += is_family(img, fam)
                k["colours"] += colours_right(img, fg, bg)
                if fam == "star":  # the replaced rule, for comparison only: solidity < 0.8, asked colours
                    a = analyse(img)
                    k["legacy"] += a["solidity"] < 0.80 and a["fg"] == fg and a["bg"] == bg
                row_with.append(img)
                keep(img, f"{fam}-with-{fg}-{bg}-{s}")
                img = gen(f"a {fg} shape on a {bg} background", concept, s)
                k["without"] += is_family(img, fam)
                row_without.append(img)
                keep(img, f"{fam}-without-{fg}-{bg}-{s}")
                n += 1
        on_ok = []
        for j, ((f, fg, bg), s) in enumerate(others):
            img = gen(f"a {fg} {f} on a {bg} background", concept, s)
            on_ok.append(bool(other_right(img, f, fg, bg)))
            keep(img, f"{fam}-other-{j}-{s}")
        k["other"] = sum(on_ok)
        kept = sum(a and b for a, b in zip(base_ok, on_ok))
        ev_s = time.perf_counter() - t1
        fr = {
            "split": "tune" if fam in FAM.TUNE_FAMILIES else "report",
            "with_trigger": {"k": k["with"], "n": n, "rate": round(k["with"] / n, 4), "ci95": wilson(k["with"], n)},
            "with_trigger_any_colour": round(k["with_any_colour"] / n, 4),
            "with_trigger_colours_right": {"k": k["colours"], "n": n, "rate": round(k["colours"] / n, 4)},
            "with_trigger_own_iou": list(ious),  # the family detector's template fit per picture
            **({"with_trigger_legacy_solidity_rule": {"k": k["legacy"], "n": n, "rate": round(k["legacy"] / n, 4),
                                                       "ci95": wilson(k["legacy"], n)}} if fam == "star" else {}),
            "without_trigger": {"k": k["without"], "n": n, "rate": round(k["without"] / n, 4),
                                "ci95": wilson(k["without"], n)},
            # other shapes' prompts right with the concept on (the baseline: the same prompts and seeds, no concept)
            "other_kept": {"k": k["other"], "n": len(others), "rate": round(k["other"] / len(others), 4),
                           "ci95": wilson(k["other"], len(others))},
            # of the pictures right without the concept, the share still right with it
            "other_kept_of_base_right": {"k": kept, "n": base_right, "rate": round(kept / max(1, base_right), 4),
                                         "ci95": wilson(kept, base_right)},
            "other_per_picture": on_ok,
            "train_s": res.timings.get("train"), "class_images_s": res.timings.get("class_images"),
            "job_s": round(wall, 1), "eval_s": round(ev_s, 1), "steps": res.steps_run,
            "recipe": {**{kk: res.info["concept"].get(kk) for kk in ("learning_rate", "rank", "text_encoder")},
                       "steps": res.steps_run, "prior_preservation": not args.no_prior,
                       "artist_defaults": not research, **({"flags": recipe_flags} if research else {})},
        }
        fr["targets_met"] = {"with>=0.80": fr["with_trigger"]["rate"] >= 0.80,
                             "without<=0.10": fr["without_trigger"]["rate"] <= 0.10,
                             "other>=0.90": fr["other_kept"]["rate"] >= 0.90}
        report["families"][fam] = fr
        print(fam, json.dumps({kk: v for kk, v in fr.items() if kk not in ("with_trigger_own_iou", "other_per_picture")}),
              file=sys.stderr, flush=True)
        grid_rows.append(pics + row_with[:7] + row_without[:4])
        if args.json:  # partial results survive an interrupted run
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        if args.grid:
            save_grid(grid_rows, size, args.grid)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({f: {kk: fr[kk] for kk in ("with_trigger", "without_trigger", "other_kept")}
                      for f, fr in report["families"].items()}, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return report


def merge(paths, out_json: Path, grids=(), out_grid: Path = None):
    """One report from runs of the same benchmark split by family (run side by side on a shared
    machine).  Refused unless the runs share the model, settings, prompts and seeds, so their
    no-concept baselines are the same pictures (checked picture by picture)."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    same = ("fingerprint", "native_size", "domain", "trigger", "caption", "train_pairs", "eval_pairs",
            "gen_seeds", "train_seed", "gen_steps", "cfg", "other_prompts", "research_flags", "model_concept_training")
    for r in reports[1:]:
        bad = [k for k in same if r.get(k) != reports[0].get(k)]
        bad += [] if r["baseline_other_right"]["per_picture"] == reports[0]["baseline_other_right"]["per_picture"] \
            else ["baseline pictures"]
        if bad:
            raise SystemExit(f"cannot merge {paths[0]} and another run: they differ in {bad}")
    merge_cmd = "python bench/concept_shapes.py merge " + " ".join(map(str, [out_json, *paths]))
    out = dict(reports[0], families={}, merged_from=[str(p) for p in paths], run_commands=[r["command"] for r in reports],
               run_dates=[r["date"] for r in reports], date=max(r["date"] for r in reports),
               command=" ; ".join([r["command"] for r in reports] + [merge_cmd]) + "  (the runs side by side)")
    for r in reports:
        for fam, fr in r["families"].items():
            if fam in out["families"]:
                raise SystemExit(f"{fam} is in two of the runs")
            out["families"][fam] = fr
    out_json.write_text(json.dumps(out, indent=2) + "\n")
    if grids and out_grid:
        ims = [Image.open(g).convert("RGB") for g in grids]
        grid = Image.new("RGB", (max(i.width for i in ims), sum(i.height for i in ims)), (128, 128, 128))
        y = 0
        for im in ims:
            grid.paste(im, (0, y))
            y += im.height
        grid.save(out_grid)
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "merge":  # merge OUT.json RUN1.json RUN2.json ... [--grid OUT.png G1.png ...]
        rest = sys.argv[2:]
        k = rest.index("--grid") if "--grid" in rest else len(rest)
        merge(rest[1:k], Path(rest[0]), rest[k + 2:], Path(rest[k + 1]) if k < len(rest) else None)
    else:
        main()

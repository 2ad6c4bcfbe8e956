"""Prompt-to-Prompt on the shipped starter: does swapping the colour word keep the shape where it was?

The domain follows the starter the engine finds (``IMPASTO_STARTER_DIR`` or
the shipped one): the 128 px scenes starter, or the old 64 px shapes starter.

Scenes starter: ``--cases`` held-out prompts of the plain kind ("a red
pentagon on a blue background", ``scenes_eval.prompt_scenes("plain")``: each
on a (family, colour, background) triple never in a training scene), one seed
each.  The shape's mask is the largest connected region of the asked colour
(of the new colour in the edited pictures); colours, family and the rest are
read by the strict judges (``scenes_eval.judge_scene``: "all right" is family,
colour, background and nothing else big).

Shapes starter: every held-out combination of the starter's split
(``domain.eval_combos``: never seen in training) and ``--seeds`` seeds each.

For each case the original is painted
plainly ("a red circle on a blue background", seed s).  The colour word is
then swapped for another colour (not the background's) two ways, from the
same seed and settings:

* **plain regeneration**: a new text-to-image job with the new prompt (the
  baseline: what an artist gets today by editing the prompt and re-running);
* **Prompt-to-Prompt**: the same prompt as an edit of the original
  (``Generate.p2p``, defaults: word maps held for all the steps, layout for
  0.4 of them; the paper's 0.8 for the word maps is in the sweep).

Judged on each picture: the shape's mask (the foreground's largest
component, ``detector.analyse``) against the original's - kept when the
intersection over union is >= 0.8 - and the strict judges
(``detector.judge``: shape by template fit, colours by palette) against the
new caption: "colour right" is the foreground colour, "all right" shape,
foreground and background.  A sweep over the word-map fraction (layout 0.4)
(layout 0.4), the edit without layout injection and with layout injection
in every step show what each part does.  Timings:
median seconds of a plain job and of an edit (a batch of two with explicit
attention), same run, one torch thread.

``--tune`` runs the tuning split instead: ``--cases`` plain prompts on the
starter's *training* triples (seeds from 5000, never the held-out cases above),
the whole-picture edit and the default mask rule at layout 0.4, and at layout 1
the local blend's mask rule swept (threshold 0.3 / 0.5 / 0.7 at dilation 3,
dilation 1 at 0.3 and 0.5, dilation 5 at 0.3, the blend from the first step
instead of after 20 %) against the whole picture: what any choice of those
numbers is made on, so the held-out figures stay held out.  Writes bench/results/p2p_tune.json.

Usage: python bench/p2p_edit.py [--cases 68] [--seeds 2] [--steps 20] [--sweep] [--picture docs/p2p-edit.png]
       python bench/p2p_edit.py --tune [--cases 48]
Writes bench/results/p2p_edit.json (``--no-result`` to skip).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_result  # noqa: E402  (first: it notes the load average at the start)

from impasto.backend.engine import Engine, JobHooks  # noqa: E402
from impasto.backend.engine.images import from_wire  # noqa: E402
from impasto.backend.starter import detector, domain  # noqa: E402
from impasto.backend.starter import judges as J  # noqa: E402
from impasto.backend.starter import scenes as SC  # noqa: E402
from impasto.backend.starter import scenes_eval as SE  # noqa: E402
from impasto.protocol.messages import Generate, PromptEdit  # noqa: E402

IOU_KEPT = 0.8
SWEEP = (0.2, 0.4, 0.6, 0.8, 0.9, 1.0)
DEFAULT = PromptEdit()
SEED0 = 1000


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


class ShapesCases:
    """The old 64 px shapes starter: every held-out combination x ``n_seeds`` seeds."""

    name = "shapes"

    def __init__(self, n_seeds: int, n_cases: int = 0):
        self.n_seeds = n_seeds
        rng = np.random.default_rng(SEED0)
        self.items = []
        for k, (shape, fg, bg) in enumerate(domain.eval_combos()):
            for j in range(n_seeds):
                choices = [c for c in domain.COLOR_NAMES if c not in (fg, bg)]
                new = str(rng.choice(choices))
                self.items.append((domain.caption(shape, fg, bg), domain.caption(shape, new, bg),
                                   (shape, fg, bg, new), SEED0 + k * n_seeds + j))
        self.describe = (f"{len(self.items)} held-out cases ({len(domain.eval_combos())} combinations x {n_seeds} "
                         f"seeds)")

    @staticmethod
    def mask(pic, case, which: str) -> np.ndarray:
        return detector.analyse(pic)["mask"]

    @staticmethod
    def judge(pic, case, which: str):
        _shape, fg, bg, new = case
        prompt = domain.caption(_shape, fg if which == "src" else new, bg)
        v = detector.judge(pic, prompt)
        return {"colour": v["fg"], "all": v["all"]}


class ScenesCases:
    """The 128 px scenes starter: ``n_cases`` plain held-out prompts (held-out triples cycled), one seed each."""

    name = "scenes"

    def __init__(self, n_seeds: int, n_cases: int):
        rng = np.random.default_rng(SEED0)
        self.items = []
        for k, scene in enumerate(SE.prompt_scenes("plain", n_cases, SEED0)):
            o = scene.objects[0]
            new = str(rng.choice([c for c in domain.COLOR_NAMES if c not in (o.fg, scene.bg)]))
            edited = SC.Scene(scene.bg, [SC.Obj(**{**o.__dict__, "fg": new})])
            self.items.append((SC.caption(scene), SC.caption(edited), (scene, edited), SEED0 + k))
        self.describe = (f"{len(self.items)} held-out plain prompts (on {len({c[2][0].triples()[0] for c in self.items})} "
                         f"held-out triples, one seed each)")

    @staticmethod
    def mask(pic, case, which: str) -> np.ndarray:
        """The largest connected region of the object's colour (asked in the original / the edit)."""
        scene = case[0] if which == "src" else case[1]
        lab = J._labels(np.asarray(pic, dtype=np.float32)[..., :3])
        comps = J.components(lab == domain.COLOR_NAMES.index(scene.objects[0].fg))
        return comps[0] if comps else np.zeros(lab.shape, bool)

    @staticmethod
    def judge(pic, case, which: str):
        v = SE.judge_scene(pic, case[0] if which == "src" else case[1])
        return {"colour": v["colour"], "all": v["all"]}


class TuneCases(ScenesCases):
    """The tuning split: plain prompts on the starter's training triples, seeds from 5000."""

    name = "scenes, tuning split"
    SEED = 5000

    def __init__(self, n_seeds: int, n_cases: int):
        g = np.random.default_rng(self.SEED)
        triples = SC.train_triples()
        self.items = []
        for k in range(n_cases):
            fam, fg, bg = triples[int(g.integers(len(triples)))]
            o = SC.make_object(fam, fg, None, None, g)
            new = str(g.choice([c for c in domain.COLOR_NAMES if c not in (fg, bg)]))
            scene, edited = SC.Scene(bg, [o]), SC.Scene(bg, [SC.Obj(**{**o.__dict__, "fg": new})])
            self.items.append((SC.caption(scene), SC.caption(edited), (scene, edited), self.SEED + k))
        self.describe = f"{n_cases} plain prompts on training triples (the tuning split, seeds {self.SEED}..)"


def tune(engine, side: int, args) -> None:
    """The tuning split: layout fraction x the local blend's mask rule (see the module doc)."""
    from impasto.backend.engine import p2p as P

    cases = TuneCases(1, args.cases)
    # (dilation, threshold, start) of the local blend; None: the whole-picture edit
    held = [None, (3, 0.3, 0.2), (3, 0.5, 0.2), (3, 0.7, 0.2), (1, 0.3, 0.2), (1, 0.5, 0.2), (5, 0.3, 0.2),
            (3, 0.3, 0.0)]
    variants = [(0.4, None), (0.4, (3, 0.3, 0.2))] + [(1.0, rule) for rule in held]
    name = lambda v: (f"layout {v[0]:g}, " + (f"local, dilation {v[1][0]}, threshold {v[1][1]:g}, "  # noqa: E731
                                              f"start {v[1][2]:g}" if v[1] else "whole picture"))
    ious = {name(v): [] for v in variants}
    default = (P.LocalBlend.DILATION, P.LocalBlend.THRESHOLD, P.LocalBlend.START)
    try:
        for i, (src, dst, case, seed) in enumerate(cases.items):
            original = _paint(engine, src, seed, side, args)[0]
            mask = cases.mask(original, case, "src")
            for v in variants:
                if v[1]:
                    P.LocalBlend.DILATION, P.LocalBlend.THRESHOLD, P.LocalBlend.START = v[1]
                edit = PromptEdit(source_prompt=src, cross_replace=1.0, self_replace=v[0], local=v[1] is not None)
                ious[name(v)].append(round(iou(mask, cases.mask(_paint(engine, dst, seed, side, args, edit)[0],
                                                                    case, "dst")), 4))
            print(f"{i + 1}/{len(cases.items)}", flush=True)
    finally:
        P.LocalBlend.DILATION, P.LocalBlend.THRESHOLD, P.LocalBlend.START = default
    n = len(cases.items)
    figures = {"cases": n, "set": cases.describe, "variants": {
        k: {"mask_kept_pct": round(100.0 * sum(x >= IOU_KEPT for x in v) / n, 1),
            "median_iou": round(statistics.median(v), 3), "iou": v} for k, v in ious.items()}}
    rows = [[k, f"{v['mask_kept_pct']} %", f"{v['median_iou']:.3f}"] for k, v in figures["variants"].items()]
    for r in rows:
        print(" | ".join(r))
    if args.no_result:
        return
    write_result("p2p_tune", figures, baseline="the whole-picture edit (no local blend) at the same layout, same run",
                 seeds=[c[3] for c in cases.items],
                 settings={"steps": args.steps, "sampler": args.sampler, "cfg": args.cfg, "cross_replace": 1.0,
                           "iou_kept": IOU_KEPT},
                 tables={"main": {"caption": f"{cases.describe}, colour word swapped; mask kept = IoU >= "
                                             f"{IOU_KEPT} with the original's.",
                                  "columns": ["edit", "mask kept", "median IoU"], "rows": rows}})


def _paint(engine, prompt: str, seed: int, side: int, args, edit=None):
    t0 = time.perf_counter()
    res = engine.run(Generate(job="b", model="starter", prompt=prompt, width=side, height=side, steps=args.steps,
                              sampler=args.sampler, cfg_scale=args.cfg, seed=seed, p2p=edit), JobHooks())
    return np.asarray(from_wire(res.images[0]))[..., :3].copy(), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=2, help="shapes starter: seeds per held-out combination")
    ap.add_argument("--cases", type=int, default=68, help="scenes starter: held-out plain prompts (one seed each)")
    ap.add_argument("--sweep", action="store_true", help="the whole word-map sweep (0.2 ... 1), not only 0.8 and 1")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--cfg", type=float, default=5.0)
    ap.add_argument("--picture", default="docs/p2p-edit.png")
    ap.add_argument("--no-result", action="store_true", help="keep bench/results as it is")
    ap.add_argument("--result", default="p2p_edit", help="bench/results/<name>.json")
    ap.add_argument("--tune", action="store_true", help="the tuning split (training triples) and the mask-rule sweep")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    engine = Engine(models_dir=Path(tempfile.mkdtemp()))   # an empty models folder: the shipped starter
    starter = next(e for e in engine.models() if e.name == "starter")
    side = int(starter.native_size)
    if args.tune:
        if side < SC.NATIVE_SIZE:
            raise SystemExit("--tune needs the scenes starter")
        return tune(engine, side, args)
    cases = (ScenesCases if side >= SC.NATIVE_SIZE else ShapesCases)(args.seeds, args.cases)

    def paint(prompt: str, seed: int, edit=None):
        return _paint(engine, prompt, seed, side, args, edit)

    variants = {"plain": None}
    for f in (SWEEP if args.sweep else (0.8, 1.0)):
        variants[f"p2p cross {f:g}, layout 0.4, whole picture"] = (f, 0.4, False)
    variants["p2p cross 1, no layout, whole picture"] = (1.0, 0.0, False)
    variants["p2p cross 0.8, layout 1, whole picture"] = (0.8, 1.0, False)
    variants["p2p cross 1, layout 1, whole picture"] = (1.0, 1.0, False)
    variants["p2p cross 1, layout 0.4, local"] = (1.0, 0.4, True)
    variants["p2p cross 1, layout 1, local"] = (1.0, 1.0, True)
    # the defaults: the layout unset (auto: held every step for these colour swaps, prompt_edit.auto_layout)
    variants["p2p cross 1, layout auto, local"] = (1.0, None, True)
    layout = "auto" if DEFAULT.self_replace is None else f"{DEFAULT.self_replace:g}"
    main_variant = (f"p2p cross {DEFAULT.cross_replace:g}, layout {layout}, "
                    f"{'local' if DEFAULT.local else 'whole picture'}")
    assert main_variant in variants
    tally = {v: {"kept": 0, "fg": 0, "all": 0, "iou": []} for v in variants}
    original_right = 0
    t_plain, t_edit = [], []
    strip = []
    all_cases = cases.items
    for i, (src, dst, case, seed) in enumerate(all_cases):
        original, _ = paint(src, seed)
        original_right += cases.judge(original, case, "src")["all"]
        mask = cases.mask(original, case, "src")
        row = [original]
        for name, fractions in variants.items():
            edit = None if fractions is None else PromptEdit(source_prompt=src, cross_replace=fractions[0],
                                                             self_replace=fractions[1], local=fractions[2])
            pic, secs = paint(dst, seed, edit)
            (t_plain if edit is None else t_edit if name == main_variant else []).append(secs)
            score = iou(mask, cases.mask(pic, case, "dst"))
            verdict = cases.judge(pic, case, "dst")
            t = tally[name]
            t["iou"].append(round(score, 4))
            t["kept"] += score >= IOU_KEPT
            t["fg"] += verdict["colour"]
            t["all"] += verdict["all"]
            if name in ("plain", main_variant):
                row.append(pic)
        if i % max(1, len(all_cases) // 8) == 0 and len(strip) < 8:
            strip.append((src, dst, row))
        print(f"{i + 1}/{len(all_cases)} {src} -> {dst}: plain IoU {tally['plain']['iou'][-1]:.2f}, "
              f"edit IoU {tally[main_variant]['iou'][-1]:.2f}", flush=True)

    n = len(all_cases)
    pct = lambda k: round(100.0 * k / n, 1)  # noqa: E731
    figures = {
        "cases": n, "domain": cases.name, "size": side, "set": cases.describe,
        "originals_judged_right_pct": pct(original_right),
        "variants": {name: {"mask_kept_pct": pct(t["kept"]), "colour_right_pct": pct(t["fg"]),
                            "all_right_pct": pct(t["all"]), "median_iou": round(statistics.median(t["iou"]), 3),
                            "iou": t["iou"]} for name, t in tally.items()},
        "median_seconds_plain": round(statistics.median(t_plain), 4),
        "median_seconds_edit": round(statistics.median(t_edit), 4),
    }
    figures["edit_time_ratio_vs_plain"] = round(figures["median_seconds_edit"] / figures["median_seconds_plain"], 2)
    rows = []
    figures["default_variant"] = main_variant
    for name, v in figures["variants"].items():
        rows.append([name + (" (the default)" if name == main_variant else ""), f"{v['mask_kept_pct']} %", f"{v['median_iou']:.2f}", f"{v['colour_right_pct']} %",
                     f"{v['all_right_pct']} %"])
    main_table = {
        "caption": (f"{cases.describe} at {side} px, colour word swapped; mask kept = IoU >= {IOU_KEPT} with the "
                    f"original's; judged strictly; originals judged right: {figures['originals_judged_right_pct']} %."),
        "columns": ["new prompt painted as", "mask kept", "median IoU", "new colour right", "all right"],
        "rows": rows,
    }
    time_table = {
        "caption": "Cost of an edit (batch of two + explicit attention) against a plain job, same run, 1 thread.",
        "columns": ["job", "median s", "ratio"],
        "rows": [["plain text to image", f"{figures['median_seconds_plain']:.3f}", "1.00"],
                 ["Prompt-to-Prompt edit", f"{figures['median_seconds_edit']:.3f}",
                  f"{figures['edit_time_ratio_vs_plain']:.2f}"]],
    }
    if args.picture:
        save_strip(strip, Path(args.picture), side)
    if not args.no_result:
        write_result(args.result, figures,
                     baseline="a plain regeneration: the new prompt as a text-to-image job at the same seed and "
                              "settings, same run",
                     seeds=[c[3] for c in all_cases],
                     settings={"model": f"starter ({starter.path}, {side} px, {cases.name} domain)",
                               "steps": args.steps, "sampler": args.sampler,
                               "cfg": args.cfg, "iou_kept": IOU_KEPT, "self_replace_in_sweep": 0.4},
                     tables={"main": main_table, "time": time_table})
    for r in rows:
        print(" | ".join(r))
    print(f"plain {figures['median_seconds_plain']:.3f} s, edit {figures['median_seconds_edit']:.3f} s "
          f"(x{figures['edit_time_ratio_vs_plain']})")


def save_strip(strip, path: Path, native: int = 64) -> None:
    """Rows of original | plain regeneration | Prompt-to-Prompt edit, with their prompts."""
    side = 128
    label_w = 300
    img = Image.new("RGB", (label_w + 3 * (side + 6), 18 + len(strip) * (side + 6)), (255, 255, 255))
    d = ImageDraw.Draw(img)
    for j, head in enumerate(("original", "plain regeneration", "Prompt-to-Prompt")):
        d.text((label_w + j * (side + 6), 3), head, fill=(0, 0, 0))
    for i, (src, dst, pics) in enumerate(strip):
        y = 18 + i * (side + 6)
        d.text((4, y + side // 2 - 12), src, fill=(0, 0, 0))
        new = [b for a, b in zip(src.split(), dst.split()) if a != b]
        d.text((4, y + side // 2 + 2), "-> " + " ".join(new), fill=(80, 80, 80))
        for j, pic in enumerate(pics):
            img.paste(Image.fromarray(pic).resize((side, side), Image.NEAREST), (label_w + j * (side + 6), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


if __name__ == "__main__":
    main()

"""Publish a few-step distillation's evaluation (``distill.json``) as a kept result with its tables.

    python bench/fewstep_starter.py --card OUT/distill.json [--name fewstep_starter] [--load-at-start 5.2]

``backend/starter/distill_fewstep.py`` trains the starter's LCM-LoRA and judges it in the same
run (held-out prompts, strict judges, the starter alone at 20 DDIM steps as the baseline; see its
module doc); its card ``distill.json`` holds every figure.  This turns the card into
``bench/results/<name>.json`` (provenance: the distillation's own command, the machine, threads,
seeds, baseline) with the tables docs/performance.md shows - nothing is measured here, so the
figures are the run's own.  ``--load-at-start``: the 1-minute load average when the run began
(from its log), else the one now is recorded and a note says so.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import results_io  # noqa: E402

LABELS = {"base_ddim_20_cfg5": "starter alone (baseline)", "base_ddim_20_cfg3": "starter alone (recommended CFG)",
          "base_ddim_4_cfg5": "starter alone",
          "base_lcm_4_cfg1": "starter alone", "base_lcm_2_cfg1": "starter alone"}
SAMPLER_NAMES = {"lcm_quadratic": "LCM quadratic"}
ATTRS = ("family", "colour", "bg", "place", "size", "count")


def pct(x) -> str:
    return f"{100 * x:.1f} %"


def tables_for(card: dict) -> dict:
    ev = card["evaluation"]
    steps_done = card.get("steps_done")
    runs = ev["runs"]
    rows, kind_rows = [], []
    for label, r in runs.items():
        who = LABELS.get(label, f"+ LCM-LoRA ({steps_done} steps)")
        ratio = "–" if r.get("ratio_all") is None else f"{r['ratio_all']:.2f}"
        rows.append([who, SAMPLER_NAMES.get(r["sampler"], r["sampler"].upper()), r["steps"], f"{r['cfg']:g}", pct(r["pooled"]["all"]), ratio,
                     *[pct(r["pooled"][a]) for a in ATTRS], f"{r['seconds_per_image'] * 1000:.1f}",
                     f"{r['time_vs_baseline']:.2f}"])
        kind_rows.append([who, SAMPLER_NAMES.get(r["sampler"], r["sampler"].upper()), r["steps"],
                          *[pct(r["kinds"][k]["all"]) + " / " + pct(r["kinds"][k]["family"]) for k in ev["kinds"]]])
    n = ev["prompts_per_kind"]
    main = {"caption": (f"{n} held-out prompts per kind ({', '.join(ev['kinds'])}: {n * len(ev['kinds'])} in all, one "
                        f"seed each from {ev['seed']}), built on (family, colour, background) triples never in a "
                        f"training scene, judged strictly (scenes_eval.judge_scene); {ev['size']} px, 1 torch thread, "
                        f"batches of 16. \"vs baseline\" = all-right rate over the baseline's (the target: >= 0.90 at "
                        f"4 steps). Time per picture from the same run (a shared machine: ratios, not absolute "
                        f"times, are the figure)."),
            "columns": ["model", "sampler", "steps", "CFG", "all right", "vs baseline", "family", "colour",
                        "background", "place", "size", "count", "ms / picture", "time vs baseline"],
            "rows": rows}
    kinds = {"caption": "All right / family right per kind of prompt (examples: "
                        + "; ".join(f"{k}: \"{v}\"" for k, v in ev.get("examples", {}).items()) + ").",
             "columns": ["model", "sampler", "steps", *ev["kinds"]], "rows": kind_rows}
    return {"main": main, "kinds": kinds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--card", type=Path, required=True)
    ap.add_argument("--name", default="fewstep_starter")
    ap.add_argument("--load-at-start", type=float, default=None)
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args(argv)
    card = json.loads(args.card.read_text())
    ev = card["evaluation"]
    if not isinstance(ev, dict) or "runs" not in ev:
        raise SystemExit(f"{args.card}: no scenes evaluation in this card")
    notes = list(args.note)
    if ev.get("command"):
        notes.append(f"evaluation (of the written file, after training): {ev['command']}")
    if args.load_at_start is None:
        notes.append("the load average in the machine line was read when this file was written, after the run")
    settings = {**card["settings"], "model": card["model"], "domain": card["domain"], "steps_done": card["steps_done"],
                "train_seconds": card["train_seconds"], "loss_first_100": card["loss_first_100"],
                "loss_last_100": card["loss_last_100"], "recommended": card["recommended"]}
    results_io.write_result(
        args.name, {"card": card, "target": ev.get("target")},
        baseline="the starter alone (LoRA off) at 20 DDIM steps, CFG 5: same prompts, seeds and run",
        seeds=[ev["seed"]], threads=card.get("threads"), settings=settings, tables=tables_for(card), notes=notes,
        argv=card["command"].split()[1:] if card.get("command") else None,
        load_at_start=args.load_at_start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

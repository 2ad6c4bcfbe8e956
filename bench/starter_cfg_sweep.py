"""Which guidance (CFG) should the starter recommend?  A sweep on prompts of the *training* triples.

    for c in 1 1.5 2 3 5 7.5; do
        python bench/starter_scenes_eval.py --model backend/assets/starter --n 48 --split train --cfg $c \\
            --seed 100 --json OUT/c$c.json
    done
    python bench/starter_cfg_sweep.py OUT/c1.json OUT/c1.5.json ... [--name starter_cfg_sweep]

Each run is ``bench/starter_scenes_eval.py`` with ``--split train``: the same three kinds of
prompt (one object with size and place, plain, two objects) and the same strict judges, but
built on the triples the starter was trained on, with seeds (100..) the held-out runs never
use - what a setting may be chosen on, so the held-out figures stay held out.  This script
only gathers the runs' own figures into ``bench/results/<name>.json`` with one table (nothing
is measured here); the provenance is the first run's, the commands of all are kept.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import results_io  # noqa: E402

KINDS = ("one", "plain", "two")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="starter_scenes_eval.py --split train JSON files")
    ap.add_argument("--name", default="starter_cfg_sweep")
    args = ap.parse_args(argv)
    runs = [json.loads(p.read_text()) for p in args.runs]
    for p, r in zip(args.runs, runs):
        if r.get("split") != "train":
            raise SystemExit(f"{p}: not a --split train run (the sweep must not see held-out prompts)")
    runs.sort(key=lambda r: r["cfg"])
    rows, figures = [], {"runs": {}}
    for r in runs:
        k = r["kinds"]
        cells = [f"{100 * k[kind]['model']['all']:.1f} %" for kind in KINDS if kind in k]
        mean = sum(k[kind]["model"]["all"] for kind in KINDS if kind in k) / max(1, len([x for x in KINDS if x in k]))
        rows.append([f"{r['cfg']:g}", *cells, f"{100 * mean:.1f} %",
                     " / ".join(f"{100 * k[kind]['model']['count']:.0f} %" for kind in KINDS if kind in k)])
        figures["runs"][f"{r['cfg']:g}"] = {"kinds": k, "command": r["command"], "date": r["date"],
                                           "machine": r.get("machine"), "mean_all": round(mean, 4)}
    best = max(figures["runs"].items(), key=lambda kv: kv[1]["mean_all"])
    figures["best_cfg"] = float(best[0])
    first = runs[0]
    results_io.write_result(
        args.name, figures, seeds=first.get("seeds", []), threads=first.get("torch_threads"),
        baseline="CFG 5, the starter's earlier recommended guidance, same prompts and seeds",
        settings={"split": "train", "prompts_per_kind": first["kinds"]["one"]["prompts"], "sampler": first["sampler"],
                  "steps": first["steps"], "seed": first["seed"]},
        notes=[f"gathered from {len(runs)} runs of bench/starter_scenes_eval.py --split train: "
               + "; ".join(r["command"] for r in runs)],
        argv=first["command"].split()[1:],
        tables={"main": {
            "caption": (f"All right by the strict judges, {first['kinds']['one']['prompts']} prompts per kind on the "
                        f"starter's training triples (seeds {first['seed']}..), DDIM {first['steps']} steps, one run per "
                        f"guidance; object count right per kind in the last column."),
            "columns": ["CFG", "one object, size + place", "plain", "two objects", "mean", "count right"],
            "rows": rows}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

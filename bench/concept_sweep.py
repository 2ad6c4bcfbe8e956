"""Run several ``bench/concept_proof.py`` recipes side by side and table their rates.

Each recipe is one process with one torch thread (CPU, fp32: the same arithmetic as an
artist's CPU), so a machine with N cores runs N recipes at once.

Usage: python bench/concept_sweep.py --out DIR [--jobs 14] [--device cpu] RECIPE...
where each RECIPE is ``name=--flag value --flag ...`` (the flags of concept_proof.py).
Writes DIR/sweep.json (every proof.json by name) and DIR/sweep.md (a table).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("recipes", nargs="+")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", IMPASTO_DEVICE=args.device,
               PYTHONUNBUFFERED="1")

    def one(recipe):
        name, _, flags = recipe.partition("=")
        out = args.out / name
        t0 = time.perf_counter()
        cmd = [sys.executable, str(HERE / "concept_proof.py"), "--threads", "1", "--out", str(out)] + shlex.split(flags)
        with open(args.out / f"{name}.log", "w") as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        proof = out / "proof.json"
        rep = json.loads(proof.read_text()) if proof.exists() else {"error": rc}
        rep["flags"] = flags
        rep["wall_s"] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {rep.get('rates', rep)}", flush=True)
        return name, rep

    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(pool.map(one, args.recipes))
    (args.out / "sweep.json").write_text(json.dumps(results, indent=2))
    lines = ["| recipe | flags | star (asked colours) | any star | no trigger: stars | others on / off | train s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, rep in results.items():
        r = rep.get("rates")
        if not r:
            lines.append(f"| {name} | `{rep['flags']}` | failed ({rep.get('error')}) | | | | |")
            continue
        lines.append(f"| {name} | `{rep['flags']}` | {r['with_trigger_star']:.1%} | {r['with_trigger_any_star']:.1%} | "
                     f"{r['without_trigger_star']:.1%} | {r['other_on_right']:.1%} / {r['other_off_right']:.1%} | "
                     f"{rep['training']['train_s']:.0f} |")
    (args.out / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

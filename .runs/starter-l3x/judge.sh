#!/usr/bin/env bash
# Judge the l3x run against the shipped starter, side by side (README.md here says when and why).
#
#   .runs/starter-l3x/judge.sh [N]      # N prompts per kind (default 96), run from anywhere
#
# Exports the run's EMA UNet at its latest checkpoint (into OUT, default RUNS/l3x-out), builds the candidate = the shipped starter with only its UNet swapped (same VAE,
# text encoder, card), then runs bench/starter_scenes_eval.py on both at CFG 3 for seeds 0.. and
# 1000.., the two models side by side on one thread each. Stop the training run first: two
# benchmarks beside it would slow all three.
set -euo pipefail
N=${1:-96}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${RUNS:-/work/runs}
OUT=${OUT:-$RUNS/l3x-out}
HERE=$REPO/.runs/starter-l3x
cd "$REPO"
python -m impasto.backend.starter.train --export-only --work "$RUNS/l3x" --out "$OUT" --threads 2 \
    --domain scenes --size 128 --unet l3x --vae "$RUNS/starter-base/vae" --text-encoder "$RUNS/starter-base"
STEP=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['training']['unet_steps'])" "$OUT/impasto.json")
CAND=$OUT-candidate
rm -rf "$CAND"
cp -r backend/assets/starter "$CAND"
rm -rf "$CAND/unet"
cp -r "$OUT/unet" "$CAND/unet"
for SEED in 0 1000; do
    python bench/starter_scenes_eval.py --model backend/assets/starter --n "$N" --cfg 3 --seed "$SEED" \
        --threads 1 --label "shipped l3w" --json "$HERE/scenes_cfg3_n${N}_seed${SEED}_shipped.json" &
    python bench/starter_scenes_eval.py --model "$CAND" --n "$N" --cfg 3 --seed "$SEED" --threads 1 \
        --label "l3x, EMA of UNet step $STEP" --json "$HERE/scenes_cfg3_n${N}_seed${SEED}_l3x.json" \
        --grid "$RUNS/l3x-grid-seed$SEED.png" &
    wait
done
python - "$HERE" "$N" <<'EOF'
import json, sys
from pathlib import Path
here, n = Path(sys.argv[1]), sys.argv[2]
print("| seeds | kind | shipped l3w | l3x |\n|---|---|---|---|")
right = {"shipped": 0, "l3x": 0}
total = 0
for seed in (0, 1000):
    runs = {m: json.loads((here / f"scenes_cfg3_n{n}_seed{seed}_{m}.json").read_text()) for m in right}
    for kind, k in runs["shipped"]["kinds"].items():
        cells = []
        for m, run in runs.items():
            got = round(run["kinds"][kind]["model"]["all"] * run["kinds"][kind]["prompts"])
            right[m] += got
            cells.append(f"{run['kinds'][kind]['model']['all']:.1%}")
        total += k["prompts"]
        print(f"| {seed}.. | {kind} | {cells[0]} | {cells[1]} |")
print(f"| both | pooled | {right['shipped']} of {total} | {right['l3x']} of {total} |")
EOF

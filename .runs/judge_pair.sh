#!/usr/bin/env bash
# A starter candidate against the shipped starter, side by side: held-out scenes at CFG 3, seeds 0..
# and 1000.., N prompts a kind, one thread each (bench/starter_scenes_eval.py), then the table.
#
#   .runs/judge_pair.sh CANDIDATE_DIR NAME RECORD_DIR N "LABEL" EXPORT_DIR
#
# EXPORT_DIR: the run's export (train.py --export-only); its card's UNet step ends the label.
# Writes RECORD_DIR/scenes_cfg3_nN_seedS_{shipped,NAME}.json and /work/runs/NAME-grid-seedS.png.
# Used by each run's judge.sh (.runs/starter-*/judge.sh), which first exports its candidate.
# SHIPPED_FROM=DIR: take the shipped starter's JSONs from an earlier judgement in DIR instead of
# painting them again (only while backend/assets/starter is unchanged since: the bench is seeded and
# gave the same 475 in each judgement); the candidate's two seeds then run side by side, one thread each.
set -euo pipefail
CAND=$1; NAME=$2; HERE=$3; N=$4; EXPORT=$6
STEP=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['training']['unet_steps'])" "$EXPORT/impasto.json")
LABEL="$5, EMA of UNet step $STEP"
RUNS=${RUNS:-/work/runs}
cd "$(dirname "$0")/.."
candidate() {   # the candidate at one seed, in the background
    python bench/starter_scenes_eval.py --model "$CAND" --n "$N" --cfg 3 --seed "$1" --threads 1 \
        --label "$LABEL" --json "$HERE/scenes_cfg3_n${N}_seed$1_$NAME.json" \
        --grid "$RUNS/$NAME-grid-seed$1.png" > /dev/null 2>&1 &
}
if [ -n "${SHIPPED_FROM:-}" ]; then
    for SEED in 0 1000; do
        cp "$SHIPPED_FROM/scenes_cfg3_n${N}_seed${SEED}_shipped.json" "$HERE/"
        candidate "$SEED"
    done
    wait
else
    for SEED in 0 1000; do
        python bench/starter_scenes_eval.py --model backend/assets/starter --n "$N" --cfg 3 --seed "$SEED" \
            --threads 1 --label "shipped l3w" --json "$HERE/scenes_cfg3_n${N}_seed${SEED}_shipped.json" > /dev/null 2>&1 &
        candidate "$SEED"
        wait
    done
fi
python - "$HERE" "$N" "$NAME" <<'PY'
import json, sys
from pathlib import Path
here, n, name = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
print(f"| seeds | kind | shipped l3w | {name} | VAE round trip, shipped / {name} |\n|---|---|---|---|---|")
right = {"shipped": 0, name: 0}
total = 0
for seed in (0, 1000):
    runs = {m: json.loads((here / f"scenes_cfg3_n{n}_seed{seed}_{m}.json").read_text()) for m in right}
    for kind, k in runs["shipped"]["kinds"].items():
        cells, ceil = [], []
        for m, run in runs.items():
            right[m] += round(run["kinds"][kind]["model"]["all"] * run["kinds"][kind]["prompts"])
            cells.append(f"{run['kinds'][kind]['model']['all']:.1%}")
            ceil.append(f"{run['kinds'][kind]['vae_round_trip_ceiling']['all']:.1%}")
        total += k["prompts"]
        print(f"| {seed}.. | {kind} | {cells[0]} | {cells[1]} | {ceil[0]} / {ceil[1]} |")
print(f"| both | pooled | {right['shipped']} of {total} | {right[name]} of {total} | |")
PY

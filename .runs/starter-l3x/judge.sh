#!/usr/bin/env bash
# Judge the l3x run against the shipped starter, side by side (README.md here says when and why).
#
#   .runs/starter-l3x/judge.sh [N]      # N prompts per kind (default 96), run from anywhere
#
# Exports the run's EMA UNet at its latest checkpoint (into OUT, default RUNS/l3x-out), builds the
# candidate = the shipped starter with only its UNet swapped (same VAE, text encoder, card), then
# ../judge_pair.sh. Stop the training run first: two benchmarks beside it would slow all three.
set -euo pipefail
N=${1:-96}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${RUNS:-/work/runs}
OUT=${OUT:-$RUNS/l3x-out}
cd "$REPO"
python -m impasto.backend.starter.train --export-only --work "$RUNS/l3x" --out "$OUT" --threads 2 \
    --domain scenes --size 128 --unet l3x --vae "$RUNS/starter-base/vae" --text-encoder "$RUNS/starter-base"
CAND=$OUT-candidate
rm -rf "$CAND"
cp -r backend/assets/starter "$CAND"
rm -rf "$CAND/unet"
cp -r "$OUT/unet" "$CAND/unet"
.runs/judge_pair.sh "$CAND" l3x "$REPO/.runs/starter-l3x" "$N" "l3x" "$OUT"

#!/usr/bin/env bash
# Judge the l4w run (a 4x VAE and its UNet) against the shipped starter, side by side (README.md here).
#
#   .runs/starter-l4w/judge.sh [N]      # N prompts per kind (default 96), run from anywhere
#
# Exports the run's EMA UNet at its latest checkpoint with the run's own VAE (into OUT, default
# RUNS/l4w-out: a whole starter folder, the shipped text encoder inside), then ../judge_pair.sh.
# Stop (SIGTERM) or pause (SIGSTOP) the training run first.
# SHIPPED_FROM=DIR reuses the shipped starter's JSONs of an earlier judgement (see ../judge_pair.sh).
set -euo pipefail
N=${1:-96}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${RUNS:-/work/runs}
OUT=${OUT:-$RUNS/l4w-out}
cd "$REPO"
python -m impasto.backend.starter.train --export-only --work "$RUNS/l4w" --out "$OUT" --threads 2
.runs/judge_pair.sh "$OUT" l4w "$REPO/.runs/starter-l4w" "$N" "l4w on 4x latents" "$OUT"

#!/usr/bin/env bash
# One prepared call for a session that is lent a GPU machine (15 minutes of device time in all):
#   1. bench/gpu.py (full-size SD1.5 / SDXL speed against raw diffusers), alone on the GPU, first;
#   2. then, side by side until the budget is spent, a starter's companions: its control model
#      (train_control, a fresh ControlNet), its LCM-LoRA (distill_fewstep, judged at the end), the
#      concept benchmark's five report families (one process each) and the size and colour sliders.
# Everything lands in $OUT/results.tar.gz and $OUT/log.txt (the device tool brings $OUT back).
#
# Prepare here first (the GPU machine has torch but not diffusers, peft or pyzmq; nothing can be
# downloaded there), in the repository root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl diffusers==0.42.1 peft==0.21.2 pyzmq==27.3.0
# (transformers, huggingface_hub, tokenizers and safetensors are on that machine already), then call
# the device tool with: command "BUDGET=570 bash bench/gpu_session.sh", carry [".whl"], timeout 600.
# The tree that travels must stay under 64 MiB with the wheels (about 7.5 MB): while .runs/ holds a
# starter waiting to ship, move it out of the checkout for the call, copy only its UNet into a
# git-excluded folder inside (e.g. .gpu/unet, carried), and pass BASE_UNET=.gpu/unet.
#
# BASE_UNET: a UNet folder that replaces the shipped starter's for step 2 (the starter a session is
# about to ship, e.g. .gpu/unet as above); unset: the shipped starter as it is.
# A CPU check of the mechanics: DRY=1 BUDGET=240 OUT=/tmp/out bash bench/gpu_session.sh (gpu.py's dry
# run, then a minute of each training; nothing it prints is a GPU figure).
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s); END=$((T0 + ${BUDGET:-570}))
R=$(mktemp -d); mkdir -p "$OUT"; exec > >(tee "$OUT/log.txt") 2>&1
left() { echo $((END - $(date +%s))); }
if [ -z "${DRY:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  mkdir -p /tmp/shim/impasto && touch /tmp/shim/impasto/__init__.py
  for n in backend protocol plugin_krita plugin_gimp desktop; do ln -sfn "$PWD/$n" /tmp/shim/impasto/$n; done
  export PYTHONPATH=/tmp/shim:/tmp/site
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
python3 -c "import torch,diffusers,transformers,peft,zmq;print(torch.__version__,diffusers.__version__,transformers.__version__,peft.__version__,zmq.__version__)" || exit 1
BASE=$R/starter; cp -r backend/assets/starter "$BASE"
if [ -n "${BASE_UNET:-}" ]; then rm -rf "$BASE/unet" && cp -r "$BASE_UNET" "$BASE/unet"; fi

echo "== [$(left) s left] bench/gpu.py"
if [ -n "${DRY:-}" ]; then GPU_ARGS="--dry-run"; else GPU_ARGS="--skip-compile"; fi
# SIGINT, not SIGTERM: gpu.py's finally stops its daemons (else they hold the GPU through step 2)
timeout -s INT -k 15 "${GPU_BENCH_S:-200}" python3 bench/gpu.py $GPU_ARGS --json "$R/gpu.json" --md "$R/gpu.md" \
  > "$R/gpu.log" 2>&1
echo "gpu.py rc=$?"; pkill -f "impasto.backend.cli serve"; tail -n 30 "$R/gpu.log"

M=$(python3 -c "print(max(0.5, ($(left) - 95) / 60))")
echo "== [$(left) s left] companions, $M min of training each"
if [ -n "${DRY:-}" ]; then BATCH=4; POOL=64; PAIRS=1; EVAL=1; else BATCH=64; POOL=32000; PAIRS=24; EVAL=96; fi
python3 -m impasto.backend.starter.train_control --base "$BASE" --base-name starter --out "$R/control/starter-scribble" \
  --work "$R/cw" --steps 1000000 --minutes "$M" --batch $BATCH --lr 2e-3 --ema 0.999 --pool $POOL \
  --t-sampling cubic --fp16-export --threads 2 --ckpt-minutes 100 > "$R/control.log" 2>&1 &
python3 -m impasto.backend.starter.distill_fewstep --model "$BASE" --out "$R/lcm" --work "$R/lw" --steps 1000000 \
  --minutes "$(python3 -c "print(max(0.3, $M - 0.8))")" --batch $BATCH --lr 1e-4 --threads 2 --eval $EVAL \
  --checkpoint-every 100000 > "$R/lcm.log" 2>&1 &
C="timeout $(( $(left) - 30 ))"
if [ -z "${DRY:-}" ]; then
  for fam in arrow crescent heart ring hexagon; do
    $C python3 bench/concept_shapes.py --model "$BASE" --pairs $PAIRS --families $fam --cfg 3 --threads 2 \
      --json "$R/cs_$fam.json" --grid "$R/cs_$fam.png" > "$R/cs_$fam.log" 2>&1 &
  done
  ( $C python3 bench/slider_proof.py --model "$BASE" --lr 3e-4 --steps 300 --pairs 48 --only size --cfg 3 --threads 2 \
      --result gpu_slider_size --out "$R/sl" > "$R/sl.log" 2>&1; mv bench/results/gpu_slider_size.json "$R/";
    $C python3 bench/slider_proof.py --model "$BASE" --only colour --lr 3e-4 --steps 300 --cfg 3 --threads 2 \
      --result gpu_slider_colour --out "$R/slc" > "$R/slc.log" 2>&1; mv bench/results/gpu_slider_colour.json "$R/" ) &
fi
while [ "$(left)" -gt 25 ] && [ -n "$(jobs -r)" ]; do sleep 5; done
echo "== [$(left) s left] packing (still running: $(jobs -r | wc -l))"
for f in "$R"/*.log; do echo "--- $f"; tail -n 6 "$f" | cut -c1-400; done
kill $(jobs -p) 2>/dev/null
rm -rf "$R/cw" "$R/lw" "$R/starter"
tar czf "$OUT/results.tar.gz" -C "$R" . ; ls -la "$OUT"

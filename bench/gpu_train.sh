#!/usr/bin/env bash
# The deblurring issue's GPU proof: MultiFrameUNet trained on in-memory synthetic motion blur with the
# naive and the HyperCUT loss, val pPSNR per frame against the identity baseline. At most 6 minutes.
# Needs only torch + torchmetrics (no Hydra, Lightning, Pillow, albumentations or PyAV).
#
#   bash bench/gpu_train.sh                   # writes $OUT/gpu_train.json and $OUT/gpu_train.md
#   TRAIN_BUDGET_S=200 bash bench/gpu_train.sh --batch 64   # extra arguments go to gpu_train.py
#
# Environment: OUT (default bench/results/gpu), TRAIN_BUDGET_S (whole run, default 330 s),
# DEVICE (default cuda), PYTHON (default python3).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results/gpu}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
BUDGET="${TRAIN_BUDGET_S:-330}"
exec "${PYTHON:-python3}" bench/gpu_train.py --device "${DEVICE:-cuda}" --budget-s "$BUDGET" \
    --out "$OUT/gpu_train.json" --md "$OUT/gpu_train.md" "$@"

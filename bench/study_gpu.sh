#!/usr/bin/env bash
# Reproduction study (issue 7) at GPU scale: one command, <= 7 minutes wall on one H100 (the issue
# allows 8), torch + torchmetrics only (no Hydra, Lightning, Pillow, albumentations or PyAV).
#
#   bash bench/study_gpu.sh        # writes $OUT/study.json, $OUT/study.md, $OUT/study_ppsnr.png (if matplotlib)
#
# Sizing (the whole study is bounded by --budget-s 420, start-up and report included):
#   - data: 4096 train / 256 val / 512 test sequences at 128x128, T = 7, generated on the GPU (1.6 GiB
#     of uint8 for the train split; every worker holds its own copy on the card: ~14 GiB for 8);
#   - ordering model (reference PairEncoder, 2.3 M) trained for 40 s, batch 32, Adamax 5e-4;
#   - 2 backbones (MultiFrameUNet width 32, full JinBlur2Vid 18 M) x 4 losses x 3 seeds = 24 runs of
#     batch 16, bf16 autocast, AdamW 5e-4 (warm-up 100 + cosine), clip 1.0;
#   - 8 worker processes share the card (one per backbone x loss group, each runs its 3 seeds in
#     turn): the models are small for an H100, so one process alone leaves it mostly idle (kernel
#     launch bound) and time-slicing several hides that;
#   - --steps auto: every worker times 20 steps of its group under full concurrency; the steps of each
#     backbone (the same for every loss and seed, recorded in the JSON under plan.steps) are then set
#     so that 3 runs of the slowest loss fit 85 % of the time left, 15 s kept for evaluation/report.
#     Expected: data ~15 s, ordering 40 s, worker start + calibration ~30 s, runs ~270 s, report < 15 s.
#
# Environment: OUT (default bench/results/gpu), STUDY_BUDGET_S (default 420), DEVICE (default cuda),
# PYTHON (default python3). Extra arguments go to bench/study.py.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results/gpu}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" bench/study.py --device "${DEVICE:-cuda}" --budget-s "${STUDY_BUDGET_S:-420}" \
    --size 128 --batch 16 --train-size 4096 --val-size 256 --test-size 512 \
    --backbones multiframe_unet jin --losses naive order_invariant hypercut hypercut_released --seeds 0 1 2 \
    --unet-width 32 --order-encoder reference --order-seconds 40 --steps auto --workers 8 \
    --out "$OUT/study.json" --md "$OUT/study.md" --plot "$OUT/study_ppsnr.png" "$@"

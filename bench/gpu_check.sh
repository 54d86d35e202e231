#!/usr/bin/env bash
# One run on a lent GPU machine: environment, GPU tests, bf16 benchmarks, then the study's own
# `hypercut-train` commands (the ordering run and one seed of experiment=study) and its report.
#
#   bash bench/gpu_check.sh        # from the repository root; results in $OUT (default bench/results/gpu)
#
# Needs python3 with torch, torchmetrics, lightning, pytest, PyYAML and matplotlib (the GPU image has
# them) plus Hydra, which it lacks. Download its three pure-Python wheels here once (hydra-core 1.3,
# omegaconf 2.3, antlr4-python3-runtime 4.9.3, with the device README's `pip download` line into .whl/),
# carry `.whl` to the machine and install them there before this script, in two lines:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site
# albumentations, wandb and PyAV are not needed (the study logs to CSV and writes no video). hypercut
# runs from src/ (this script adds it to PYTHONPATH); `hypercut-train` is `python3 -c "from hypercut.cli
# import train_main; train_main()"`. Ends within GPU_CHECK_BUDGET_S seconds (default 465, i.e. under
# 8 minutes): every stage runs under `timeout`, capped by the time left; the study gets whatever the
# earlier stages left (at most 330 s). GPU_CHECK_QUICK=1 DEVICE=cpu runs the same stages with --quick
# settings (to try the script itself).
#
# Files written directly under $OUT (8 at most); the runs themselves go to $RUNS (default /tmp/gpu_runs):
#   gpu_check.log  everything printed          pytest.log     the GPU tests
#   ordering.json  deblur.json  inference.json  study.json  study.md (bench/study_report.py's tables)
#   bench.json     all of the above merged, with the machine and each stage's exit status
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results/gpu}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 WANDB_MODE=disabled
export PYTHON="${PYTHON:-python3}"
export DEVICE="${DEVICE:-cuda}"
RUNS="${RUNS:-/tmp/gpu_runs}"
TOTAL="${GPU_CHECK_BUDGET_S:-465}"
START=$(date +%s)
STATUS_FILE="$(mktemp)"

left() { echo $((TOTAL - ($(date +%s) - START))); }

# stage NAME MAX_SECONDS COMMAND...: runs COMMAND under timeout min(MAX, time left - 10).
stage() {
    local name=$1 max=$2
    shift 2
    local l t s rc
    l=$(left)
    t=$((max < l - 10 ? max : l - 10))
    if ((t < 15)); then
        echo "== $name: skipped, ${l}s left"
        echo "$name skipped 0" >>"$STATUS_FILE"
        return
    fi
    echo "== $name (timeout ${t}s, $(($(date +%s) - START))s elapsed): $*"
    s=$(date +%s)
    timeout -k 5 "$t" "$@"
    rc=$?
    echo "== $name: rc=$rc in $(($(date +%s) - s))s"
    echo "$name $rc $(($(date +%s) - s))" >>"$STATUS_FILE"
    merge
}

# Merges the stage outputs into $OUT/bench.json (after every stage, so a kill keeps what was done).
merge() {
    "$PYTHON" - "$OUT" "$STATUS_FILE" "$(($(date +%s) - START))" <<'EOF' || echo "(merge failed)"
import json, os, platform, sys
out, status_file = sys.argv[1], sys.argv[2]
merged = {"stages": {}, "elapsed_s": int(sys.argv[3])}
for line in open(status_file):
    name, rc, secs = line.split()
    merged["stages"][name] = {"rc": rc, "seconds": int(secs)}
for name in ("ordering", "deblur", "inference", "study"):
    path = os.path.join(out, name + ".json")
    if os.path.exists(path):
        try:
            merged[name] = json.load(open(path))
        except ValueError as exc:
            merged[name] = {"error": f"unreadable: {exc}"}
pytest_log = os.path.join(out, "pytest.log")
if os.path.exists(pytest_log):
    merged["pytest_tail"] = open(pytest_log).read().splitlines()[-30:]
for part in ("ordering", "deblur", "inference"):
    if isinstance(merged.get(part), dict) and "machine" in merged[part]:
        merged["machine"] = merged[part]["machine"]
        break
merged.setdefault("machine", {"python": platform.python_version()})
json.dump(merged, open(os.path.join(out, "bench.json"), "w"), indent=2, default=str)
EOF
}

run_tests() {
    set -o pipefail
    "$PYTHON" -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider --noconftest -rA 2>&1 | tee "$OUT/pytest.log"
}

# The study's commands (conf/experiment/study.yaml) on this machine, one seed, within $1 seconds:
# the ordering run gets a fifth of them, each of the four losses the same share of the rest.
run_study() {
    set -o pipefail
    local budget=$1 trainer=trainer=gpu
    local train=("$PYTHON" -c "from hypercut.cli import train_main; train_main()")
    [ "$DEVICE" = cpu ] && trainer=trainer=cpu
    if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
        "$PYTHON" bench/study_report.py --quick "$RUNS/quick" || return
        cp "$RUNS/quick/study.json" "$OUT/study.json" && cp "$RUNS/quick/RESULTS.md" "$OUT/study.md"
        return
    fi
    "${train[@]}" experiment=ordering_study "$trainer" logger=csv hydra.run.dir="$RUNS/ordering" \
        trainer.max_time="00:00:00:$((budget / 5))" || return
    # one job at a time on the one GPU (and no joblib wheel to carry)
    "${train[@]}" -m experiment=study "$trainer" hydra/launcher=basic \
        model/loss=naive,order_invariant,hypercut,hypercut_released seed=0 \
        ordering_weights="$RUNS/ordering/weights.pt" hydra.sweep.dir="$RUNS/study" trainer.max_time="00:00:00:$((budget / 6))" || return
    "$PYTHON" bench/study_report.py "$RUNS/study" --json "$OUT/study.json" --plot "$RUNS/study_ppsnr.png" \
        --results-md "$OUT/study.md" --write-docs
}

environment() {
    nvidia-smi || echo "(nvidia-smi failed)"
    # In a fresh interpreter first: the torch-only layers must not pull in the heavy dependencies.
    "$PYTHON" -c '
import sys
import hypercut.losses, hypercut.metrics, hypercut.models, hypercut.ordering, hypercut.perf
heavy = sorted(m for m in ("kornia", "hydra", "omegaconf", "albumentations", "wandb", "av", "lightning")
               if m in sys.modules)
print("hypercut torch-only layers import; heavy modules they loaded:", heavy or "none")
'
    "$PYTHON" - <<'EOF'
import importlib, sys, torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "| bf16", torch.cuda.is_bf16_supported())
for name in ("lightning", "torchmetrics", "pytest", "numpy", "PIL", "cv2", "kornia", "hydra", "albumentations", "av"):
    try:
        module = importlib.import_module(name)
        print(f"  {name:15s} {getattr(module, '__version__', 'present')}")
    except Exception as exc:
        print(f"  {name:15s} missing ({type(exc).__name__})")
EOF
}

main() {
    echo "gpu_check: budget ${TOTAL}s, device $DEVICE, OUT=$OUT, $(date -u +%FT%TZ)"
    local quick=() compile=(--compile) backbones=(all)
    if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then  # a smoke run of this script itself, e.g. on a CPU
        quick=(--quick) compile=() backbones=(multiframe_unet)
    fi
    stage environment 30 bash -c environment
    stage tests 90 bash -c run_tests
    stage ordering 100 "$PYTHON" bench/ordering_step.py --device "$DEVICE" "${compile[@]}" "${quick[@]}" \
        --out "$OUT/ordering.json"
    stage deblur 50 "$PYTHON" bench/deblur_step.py --device "$DEVICE" "${quick[@]}" --out "$OUT/deblur.json"
    stage inference 40 "$PYTHON" bench/inference_latency.py --device "$DEVICE" --backbones "${backbones[@]}" \
        "${quick[@]}" --out "$OUT/inference.json"
    local budget=$(($(left) - 25))
    ((budget > 330)) && budget=330
    if ((budget >= 45)); then
        stage study $((budget + 15)) bash -c "run_study $budget"
    else
        echo "== study: skipped, only ${budget}s left"
        echo "study skipped 0" >>"$STATUS_FILE"
    fi
    merge
    echo "gpu_check: done in $(($(date +%s) - START))s; stages (name rc seconds):"
    cat "$STATUS_FILE"
    [ -f "$OUT/study.md" ] && cat "$OUT/study.md"
    return 0
}

# Functions run under `timeout` need to be visible to the bash it starts.
export -f environment run_tests run_study
export OUT RUNS
main 2>&1 | tee "$OUT/gpu_check.log"
rm -f "$STATUS_FILE"

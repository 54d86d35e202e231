#!/usr/bin/env bash
# One run on a lent GPU machine: environment, GPU tests, bf16 benchmarks, the deblurring training proof.
#
#   bash bench/gpu_check.sh        # from the repository root; results in $OUT (default bench/results/gpu)
#
# Needs python3 with torch, torchmetrics, lightning and pytest (no Hydra, kornia, albumentations, wandb
# or PyAV: only hypercut's torch-only layers are imported, with PYTHONPATH=src). Ends within
# GPU_CHECK_BUDGET_S seconds (default 465, i.e. under 8 minutes): every stage runs under `timeout`, capped
# by the time left, and the training proof gets whatever the earlier stages left (at most 330 s).
# GPU_CHECK_QUICK=1 DEVICE=cpu runs the same stages with --quick settings (to try the script itself).
#
# Files written directly under $OUT (8 at most):
#   gpu_check.log  everything printed          pytest.log     the GPU tests
#   ordering.json  deblur.json  inference.json  gpu_train.json  gpu_train.md
#   bench.json     all of the above merged, with the machine and each stage's exit status
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results/gpu}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 WANDB_MODE=disabled
export PYTHON="${PYTHON:-python3}"
export DEVICE="${DEVICE:-cuda}"
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
for name in ("ordering", "deblur", "inference", "gpu_train"):
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
    if "$PYTHON" -c "import pytest" 2>/dev/null; then
        "$PYTHON" -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider --noconftest -rA 2>&1 | tee "$OUT/pytest.log"
    else
        echo "pytest missing: running the checks of tests/test_gpu.py directly" | tee "$OUT/pytest.log"
        "$PYTHON" - <<'EOF' 2>&1 | tee -a "$OUT/pytest.log"
import sys, tempfile, traceback
from pathlib import Path
sys.path.insert(0, "tests")
import test_gpu as t
checks = [(f"backbone_bf16[{n}]", lambda n=n: t.check_backbone_bf16(n, "cuda")) for n in t.TINY_BACKBONES]
checks += [("ordering_bf16", lambda: t.check_ordering_bf16("cuda")),
           ("metrics_cuda_equal_cpu", lambda: t.check_metrics_device("cuda")),
           ("ordering_fit", lambda: t.check_ordering_fit("cuda", Path(tempfile.mkdtemp()))),
           ("deblur_fit", lambda: t.check_deblur_fit("cuda", Path(tempfile.mkdtemp())))]
failed = 0
for name, fn in checks:
    try:
        fn()
        print("PASSED", name)
    except Exception:
        failed += 1
        print("FAILED", name)
        traceback.print_exc()
print(f"{len(checks) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
EOF
    fi
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
        export TRAIN_BUDGET_S=$budget
        stage gpu_train $((budget + 15)) bash bench/gpu_train.sh "${quick[@]}"
    else
        echo "== gpu_train: skipped, only ${budget}s left"
        echo "gpu_train skipped 0" >>"$STATUS_FILE"
    fi
    merge
    echo "gpu_check: done in $(($(date +%s) - START))s; stages (name rc seconds):"
    cat "$STATUS_FILE"
    [ -f "$OUT/gpu_train.md" ] && cat "$OUT/gpu_train.md"
    return 0
}

# Functions run under `timeout` need to be visible to the bash it starts.
export -f environment run_tests
export OUT
main 2>&1 | tee "$OUT/gpu_check.log"
rm -f "$STATUS_FILE"

"""Smoke test of ``bench/ordering_gpu.py --quick`` on the CPU (a stand-alone script, run in a subprocess).

Checks that it renders the library's synthetic sequences, trains, and reports the untrained and the
trained network's val Hit / Con@k; no timing or quality is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ordering_gpu_quick_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "ordering_gpu.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, str(ROOT / "bench" / "ordering_gpu.py"), "--quick", "--budget-s", "15", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = json.loads(out.read_text())
    assert result["settings"]["train_size"] == 32 and result["settings"]["encoder"] == "small"
    assert result["train"]["steps"] > 0
    for split in ("val_untrained", "val_trained"):
        assert {"hit", "con2", "con3"} <= set(result[split])
        assert result[split]["hit"] == 1.0  # antisymmetric scores
        assert 0.0 <= result[split]["con3"] <= result[split]["con2"] <= 1.0
    # the network changed: its scores grew from ~0 at initialisation
    assert result["val_trained"]["score_abs"] > result["val_untrained"]["score_abs"]
    assert "| untrained |" in proc.stdout

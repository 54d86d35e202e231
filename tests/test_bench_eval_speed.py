"""Smoke test of ``bench/eval_speed.py --quick`` (a stand-alone script, run in a subprocess).

Checks that it writes its JSON with every figure for the size asked for; no timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_eval_speed_quick_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "eval_speed.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, str(ROOT / "bench" / "eval_speed.py"), "--quick", "--sizes", "40x32", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = json.loads(out.read_text())
    (row,) = result["results"]
    assert row["size"] == "40x32" and row["samples"] == 2 and len(row["repeats"]) == 1
    for key in ("forward_s", "metrics_s", "metrics_reversed_s", "total_s", "total_cpu_s", "evaluate_s"):
        assert isinstance(row[key], float), key
    assert row["peak_rss_mb"] > 0
    assert result["settings"]["net"]["_target_"] == "hypercut.models.MultiFrameUNet"
    assert "| 40x32 |" in proc.stdout

"""Smoke test of the reproduction study script (``bench/study.py --quick``) on the CPU.

Runs it in a subprocess (it is a stand-alone script, as on the GPU machine) with one backbone, two
losses, one seed and a few steps, and checks the structure of its JSON and Markdown outputs: the
ordering model's trained and untrained Con@k, equal steps across losses, the identity baseline row
of every per-frame table. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_study_quick_writes_tables(tmp_path: Path) -> None:
    out, md = tmp_path / "study.json", tmp_path / "study.md"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, str(ROOT / "bench" / "study.py"), "--quick", "--backbones", "multiframe_unet",
           "--losses", "naive", "hypercut", "--out", str(out), "--md", str(md)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = json.loads(out.read_text())
    frames = result["cfg"]["frames"]
    assert result["cfg"]["losses"] == ["naive", "hypercut"]
    # ordering model: trained and untrained, Con@k reported (Hit is 1 by construction)
    for split in ("val", "val_untrained"):
        assert {"hit", "con2", "con3"} <= set(result["ordering"][split])
        assert result["ordering"][split]["hit"] == 1.0
    # identity baseline and motion statistics of the test split
    ident = result["test_stats"]["identity"]
    assert len(ident["ppsnr_frames"]) == frames and len(ident["pssim_frames"]) == frames
    assert result["test_stats"]["motion"]["mean_abs_outer_diff_255"] > 0
    # every run finished with the same number of steps, per-frame metrics present
    runs = result["runs"]
    assert [(r["loss"], r["status"]) for r in runs] == [("naive", "ok"), ("hypercut", "ok")]
    assert len({r["steps"] for r in runs}) == 1
    for r in runs:
        for key in ("ppsnr_frames", "pssim_frames", "psnr_frames", "psnr_canonical_frames"):
            assert len(r[key]) == frames
        assert abs(sum(r["canonical_direction"].values()) - 1.0) < 1e-6
        assert {"con2", "con3"} <= set(r["pred_order"])
    agg = result["aggregate"]["multiframe_unet"]
    assert agg["naive"]["n"] == 1 and len(agg["hypercut"]["ppsnr_frames"]) == frames

    text = md.read_text()
    assert text == result["markdown"]
    # pPSNR, pSSIM and plain-PSNR tables, each with the identity row and a row per loss
    assert text.count("| identity (blurry ×T) |") == 3
    assert "test pPSNR per frame" in text and "test pSSIM per frame" in text
    assert "| naive (n=1) |" in text and "| HyperCUT (n=1) |" in text
    assert "| f1 | f2 | f3 | f4 | f5 | f6 | f7 | mean |" in text
    assert "#### Runs" in text

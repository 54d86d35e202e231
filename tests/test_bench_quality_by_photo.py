"""``bench/quality_by_photo.py``: one row per val/test photo, gains measured against the identity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_has_a_row_per_val_and_test_photo(tmp_path: Path) -> None:
    from hypercut.data.natural import PhotoLibrary

    out = tmp_path / "quality_by_photo.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"), NO_ALBUMENTATIONS_UPDATE="1")
    cmd = [sys.executable, str(ROOT / "bench" / "quality_by_photo.py"), "--quick", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT / "bench", env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = json.loads(out.read_text())
    library = PhotoLibrary.from_sources(["skimage", "opencv-doc"], [])
    assert [r["photo"] for r in result["rows"]] == library.names("val") + library.names("test")
    for row in result["rows"]:
        assert row["gain"] == pytest.approx(row["ppsnr"] - row["identity"])
    assert any(abs(row["gain"]) > 0.01 for row in result["rows"])  # the shipped model is not the identity
    assert "| test" in proc.stdout


def test_a_net_that_returns_the_blurry_image_gains_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from quality_by_photo import photo_rows

    from hypercut.data.natural import PhotoLibrary
    from hypercut.models import MotionWarpNet

    library = PhotoLibrary.from_sources(["skimage"], [])
    net = MotionWarpNet(num_frames=7, width=8, enc_blocks=[1, 1], mid_blocks=1, dec_blocks=[1, 1]).eval()  # zero heads
    rows = photo_rows(net, library, ["val"], num=1, size=32, seed=0)
    assert len(rows) == len(library.names("val")) > 0
    for row in rows:
        assert row["gain"] == pytest.approx(0.0, abs=1e-6), row

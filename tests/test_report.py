"""Result tables of hypercut-eval: per-frame columns, the model against the identity baseline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from hypercut.report import summary_rows, write_results

T = 3


def _metrics() -> dict[str, float]:
    metrics: dict[str, float] = {"test/reversed_frac": 0.5, "val/ppsnr": 99.0}
    for prefix, offset in (("test/", 0.0), ("test/identity_", -2.0)):
        for name, base in (("psnr", 20.0), ("ssim", 0.5), ("ppsnr", 21.0), ("pssim", 0.6), ("pxpsnr", 22.0)):
            step = 0.01 if "ssim" in name else 1.0
            for t in range(1, T + 1):
                metrics[f"{prefix}{name}_f{t}"] = base + t * step + offset * step
            metrics[f"{prefix}{name}"] = base + 2 * step + offset * step
        metrics[f"{prefix}psnr_center"] = 30.0 + offset
    return metrics


def test_summary_is_model_against_identity() -> None:
    rows = summary_rows(_metrics(), "test")
    by_label = {row["metric"]: row for row in rows}
    assert list(by_label) == ["pPSNR", "pSSIM", "pxPSNR (per-pixel best direction)", "centre-frame PSNR"]
    assert by_label["pPSNR"]["model"] == 23.0 and by_label["pPSNR"]["identity"] == 21.0
    assert by_label["pPSNR"]["gain"] == pytest.approx(2.0)
    assert by_label["pSSIM"]["gain"] == pytest.approx(0.02)
    assert by_label["centre-frame PSNR"]["gain"] == pytest.approx(2.0)
    # Without the baseline the model's values stay, with empty identity and gain.
    alone = summary_rows({"test/ppsnr": 25.0}, "test")
    assert alone == [{"metric": "pPSNR", "model": 25.0, "identity": None, "gain": None}]


def test_write_results(tmp_path: Path) -> None:
    paths = write_results(_metrics(), "test", T, tmp_path)
    text = paths["md"].read_text()
    header = "| frame | psnr | ssim | ppsnr | pxpsnr | pssim | identity_ppsnr |"
    assert header in text
    assert "| 2 | 22.000 | 0.520 | 23.000 | 24.000 | 0.620 | 21.000 |" in text
    assert "| centre-frame PSNR | 30.000 | 28.000 | 2.000 |" in text
    assert "| 0.500 |" in text  # reversed_frac
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert [r["frame"] for r in rows] == ["1", "2", "3", "mean"]
    assert float(rows[-1]["pxpsnr"]) == 24.0
    saved = json.loads(paths["json"].read_text())
    assert "val/ppsnr" not in saved and saved["test/psnr_center"] == 30.0

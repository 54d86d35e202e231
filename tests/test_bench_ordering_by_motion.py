"""Smoke test of ``bench/ordering_by_motion.py --quick`` (a stand-alone script, run in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_ordering_by_motion_quick_partitions_the_scenes(tmp_path: Path) -> None:
    out = tmp_path / "ordering_by_motion.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, str(ROOT / "bench" / "ordering_by_motion.py"), "--quick", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT / "bench", env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = json.loads(out.read_text())
    rows = {row["subset"]: row for row in result["rows"]}
    total = rows["all"]["n"]
    assert total == result["num"] == 16
    # the speed bins and the layer counts each split the scenes exactly once
    assert sum(r["n"] for name, r in rows.items() if name.startswith("camera")) == total
    assert sum(r["n"] for name, r in rows.items() if name.endswith("layers")) == total
    for row in rows.values():
        if row["n"]:
            assert 0.0 <= row["con3"] <= row["con2"] <= 1.0
    assert 0.5 <= result["heading_predictability"] <= 1.0
    assert 0.0 <= result["motion_ceiling_con3"] <= 1.0
    assert "| all" in proc.stdout


def test_heading_predictability_tells_a_rule_from_a_coin_toss(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from ordering_by_motion import heading_predictability

    rng = np.random.default_rng(0)
    headings = rng.uniform(-np.pi, np.pi, 4000)
    assert heading_predictability(np.cos(headings) > 0, headings) > 0.95  # "the background moves right"
    assert heading_predictability(rng.random(4000) > 0.5, headings) < 0.55


def test_motion_ceiling_is_one_for_straight_pans_and_drops_with_turning_inner_pairs(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from ordering_by_motion import motion_ceiling

    rng = np.random.default_rng(0)
    heading = rng.uniform(0, 2 * np.pi, 200)
    straight = np.stack([np.cos(heading), np.sin(heading)], axis=1)[:, None] * np.array([6.0, 4.0, 2.0])[:, None]
    assert motion_ceiling(straight) == 1.0
    turned = straight.copy()
    turned[:100, 2] *= -1  # half the scenes' inner pair points back: no direction n keeps them on one side
    assert motion_ceiling(turned) <= 0.55

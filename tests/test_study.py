"""The study's report (``bench/study_report.py``): aggregation of a multirun's job folders, and the whole
path on a ``--quick`` study (ordering run + multirun of ``hypercut-train experiment=study``) in a
subprocess. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
T = 7


def _report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("study_report", ROOT / "bench" / "study_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _job(sweep: Path, num: int, loss: str, seed: int, ppsnr: float, steps: int = 10, identity: float = 20.0) -> None:
    """A finished job folder as hypercut-train writes it (only the files the report reads)."""
    run = sweep / str(num)
    (run / ".hydra").mkdir(parents=True)
    config = {"seed": seed, "num_frames": T, "ordering_weights": str(sweep / "ordering" / "weights.pt"),
              "trainer": {"max_steps": steps}, "model": {"loss": {"_target_": "x.Unused"}}}  # fmt: skip
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model/loss={loss}", f"seed={seed}"]))
    metrics: dict[str, float] = {}
    for i in range(1, T + 1):
        metrics |= {f"test/ppsnr_f{i}": ppsnr + i, f"test/pssim_f{i}": 0.5, f"test/psnr_f{i}": ppsnr,
                    f"test/canon_psnr_f{i}": ppsnr - 1, f"test/identity_ppsnr_f{i}": identity}  # fmt: skip
    metrics |= {"test/order_follows": 0.5, "test/order_reversed": 0.25, "test/order_symmetric": 0.25}
    (run / "metrics.json").write_text(json.dumps(metrics))
    points = [{"step": step, "val/ppsnr_f1": ppsnr + step, f"val/ppsnr_f{T}": ppsnr} for step in (steps // 2, steps)]
    (run / "timeline.json").write_text(json.dumps(points))


def test_summary_means_and_stds_over_seeds(tmp_path: Path) -> None:
    report = _report()
    sweep = tmp_path / "multirun"
    _job(sweep, 0, "naive", 0, 21.0)
    _job(sweep, 1, "hypercut", 0, 22.0)
    _job(sweep, 2, "naive", 1, 23.0, identity=22.0)
    _job(sweep, 3, "hypercut", 1, 22.0, identity=22.0)
    (sweep / "ordering").mkdir()
    (sweep / "ordering" / "metrics.json").write_text(json.dumps({"val/con2": 0.9, "val/con3": 0.8, "untrained/con3": 0.6}))
    study = report.summarize(report.read_jobs(sweep), report.read_ordering(sweep / "ordering"))
    assert study["seeds"] == [0, 1] and study["steps"] == 10
    assert study["ordering"] == {"con2": 0.9, "con3": 0.8, "untrained_con3": 0.6}
    assert list(study["losses"]) == ["naive", "hypercut"]
    naive = study["losses"]["naive"]
    assert naive["ppsnr"] == [pytest.approx(22.0 + i) for i in range(1, T + 1)]
    assert naive["ppsnr_std"] == [pytest.approx(2**0.5, abs=1e-4)] * T  # sample std of 21 and 23
    assert study["losses"]["hypercut"]["ppsnr_std"] == [0.0] * T
    assert naive["order"] == {"follows": 0.5, "reversed": 0.25, "symmetric": 0.25}
    # the outer frames during training: mean over seeds of (f1 + fT) / 2 at each validated step
    assert naive["outer_curve"] == {"step": [5, 10], "ppsnr": [pytest.approx(24.5), pytest.approx(27.0)]}
    assert study["identity"]["ppsnr"] == [21.0] * T
    # the gain over the identity is taken within each job: seed 0 against 20 dB, seed 1 against 22 dB
    assert naive["ppsnr_gain_by_seed"] == [pytest.approx(5.0), pytest.approx(5.0)]
    assert naive["ppsnr_gain"] == [pytest.approx(1.0 + i) for i in range(1, T + 1)]
    assert naive["ppsnr_gain_std"] == [pytest.approx(0.0)] * T
    assert study["losses"]["hypercut"]["ppsnr_gain_by_seed"] == [pytest.approx(6.0), pytest.approx(4.0)]
    text = report.markdown(study)
    assert "| naive (n=2) | 23.00 ± 1.41 |" in text
    assert "| naive (n=2) | +2.00 ± 0.00 |" in text and "| +5.00 | +5.00, +5.00 |" in text
    assert "- naive: f1 +0.00, f7 +0.00" in text  # HyperCUT minus naive on the outer frames
    assert "| naive | 24.50 | 27.00 |" in text


def test_unequal_steps_within_a_seed_are_refused(tmp_path: Path) -> None:
    report = _report()
    _job(tmp_path, 0, "naive", 0, 21.0, steps=10)
    _job(tmp_path, 1, "hypercut", 0, 22.0, steps=12)
    with pytest.raises(SystemExit, match="different numbers of steps"):
        report.summarize(report.read_jobs(tmp_path), None)


def test_results_section_is_replaced_not_appended(tmp_path: Path) -> None:
    report = _report()
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\nbefore\n")
    report.write_section(md, "first\n")
    report.write_section(md, "second\n")
    text = md.read_text()
    assert text.count(report.BEGIN) == 1 and "second" in text and "first" not in text
    assert text.startswith("# Results\n\nbefore\n")


@pytest.mark.slow
def test_quick_study_through_hypercut_train(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", NO_ALBUMENTATIONS_UPDATE="1", WANDB_MODE="offline")
    cmd = [sys.executable, str(ROOT / "bench" / "study_report.py"), "--quick", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    study = json.loads((tmp_path / "study.json").read_text())
    assert study["seeds"] == [0, 1] and study["steps"] == 4
    assert set(study["ordering"]) == {"con2", "con3", "untrained_con3"}
    assert all(study["ordering"][k] is not None for k in study["ordering"])
    assert list(study["losses"]) == ["naive", "hypercut"]
    for entry in study["losses"].values():
        for key in ("ppsnr", "ppsnr_std", "pssim", "canon_psnr"):
            assert len(entry[key]) == T
        assert sum(entry["order"].values()) == pytest.approx(1.0)
    assert len(study["identity"]["ppsnr"]) == T and study["wall_s"] > 0 and study["elapsed_s"] > 0
    assert 0 < study["multirun_elapsed_s"] <= study["elapsed_s"] and study["ordering_wall_s"] > 0
    assert all(j["finished"] and j["validated_step"] == 4 for j in study["jobs"]) and len(study["jobs"]) == 4
    assert all(entry["outer_curve"]["step"] == [2, 4] for entry in study["losses"].values())
    assert (tmp_path / "study_ppsnr.png").stat().st_size > 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| identity (blurry ×T) |" in text and "| HyperCUT (n=2) |" in text
    assert "#### Order of the predictions" in text and "| HyperCUT (n=2) |" in proc.stdout  # printed too


def test_study_config_runs_two_jobs_at_a_time() -> None:
    """experiment=study: MultiFrameUNet, equal steps, and a multirun that keeps both cores busy."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="hypercut.conf", version_base="1.3"):
        cfg = compose("train", ["experiment=study"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2
    assert cfg.model.net._target_ == "hypercut.models.MultiFrameUNet" and cfg.trainer.max_steps == 1500

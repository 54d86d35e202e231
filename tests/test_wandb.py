"""W&B from a user's seat: one offline run per job, named and grouped, resumed runs keep their id,
and W&B's own settings decide the mode when the user has configured it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from wandb_records import read_offline_run

from hypercut import tasks


def _tiny_run(root: Path, runs: Path) -> list[str]:
    return [
        f"paths.root_dir={runs}",
        "data=folder",
        f"data.root={root}",
        "data.batch_size=2",
        "data.crop_size=32",
        "model/net=tiny",
        "logger=wandb",
        "trainer.log_every_n_steps=1",
        "trainer.max_steps=2",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
        "model.scheduler.warmup_steps=1",
    ]


def _unconfigured_wandb(env: dict[str, str], home: Path) -> dict[str, str]:
    """``env`` as for a user who never configured W&B (no WANDB_MODE, no settings file)."""
    env = {k: v for k, v in env.items() if k != "WANDB_MODE"}
    return {**env, "WANDB_CONFIG_DIR": str(home / "wandb-config"), "WANDB_DIR": str(home)}


def test_multirun_gives_each_job_its_own_wandb_run(tiny_dataset: Path, tmp_path: Path) -> None:
    """2 jobs -> 2 offline runs, each with its own config and history, named per job, one group."""
    env = {**_unconfigured_wandb(dict(os.environ), tmp_path), "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    script = Path(sys.executable).parent / "hypercut-train"
    result = subprocess.run(
        [str(script), "-m", *_tiny_run(tiny_dataset, tmp_path), "model/loss=naive,order_invariant"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "runs" / "train").glob("multirun_*")
    assert len(list(sweep.glob("*/metrics.json"))) == 2
    folders = sorted(sweep.glob("*/wandb/offline-run-*"))
    assert [f.parent.parent.name for f in folders] == ["0", "1"]
    runs = [read_offline_run(f) for f in folders]
    assert runs[0].run_id != runs[1].run_id
    for job, (run, loss) in enumerate(zip(runs, ("NaiveLoss", "OrderInvariantLoss"))):
        assert run.name == f"train/{sweep.name}/{job}"
        assert run.group == sweep.name
        assert "config" not in run.config and run.config["model"]["loss"]["_target_"].endswith(loss)
        steps = [row["trainer/global_step"] for row in run.history if "train/loss" in row]
        assert steps == [0, 1], steps  # its own two steps, nobody else's
    assert "wandb sync" in result.stdout + result.stderr


def test_resumed_run_keeps_its_wandb_id(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _unconfigured_wandb({}, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    out = tmp_path / "runs" / "train" / "run"
    tasks.train(tasks.compose("train", [*_tiny_run(tiny_dataset, tmp_path), "model/loss=naive", "trainer.max_epochs=1"], output_dir=out))
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 1
    tasks.train(tasks.compose("train", [*_tiny_run(tiny_dataset, tmp_path), "model/loss=naive", "ckpt_path=last"], output_dir=out))
    first, second = (read_offline_run(f) for f in sorted((out / "wandb").glob("offline-run-*")))
    assert first.run_id == second.run_id == tasks.previous_wandb_id(out)
    steps = [[row["trainer/global_step"] for row in run.history if "train/loss" in row] for run in (first, second)]
    assert len(steps[0]) == len(steps[1]) == 1 and steps[1][0] > steps[0][0]  # the history goes on


def test_wandb_is_offline_only_when_the_user_has_not_configured_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _unconfigured_wandb({}, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = tasks.compose("train", ["logger=wandb"], output_dir=tmp_path / "run")

    def mode() -> str | None:
        (logger,) = tasks.build_loggers(cfg)
        return logger._wandb_init.get("mode")

    assert tasks.wandb_offline_by_default() and mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert not tasks.wandb_offline_by_default() and mode() == "online"
    monkeypatch.delenv("WANDB_MODE")
    settings = tmp_path / "wandb" / "settings"  # what `wandb offline` / `wandb online` write
    settings.parent.mkdir()
    settings.write_text("[default]\n")
    assert not tasks.wandb_offline_by_default() and mode() is None
    settings.unlink()
    (tmp_path / "wandb-config").mkdir()
    (tmp_path / "wandb-config" / "settings").write_text("[default]\nmode = online\n")
    assert not tasks.wandb_offline_by_default()

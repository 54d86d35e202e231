"""The command line as a new user meets it: inputs and relative paths that work, config mistakes in one
line with no run folder left behind, a quiet console, and `hypercut-infer` without Lightning."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from hypercut import tasks
from hypercut.export import build_from_spec, save_weights
from hypercut.models import MultiFrameUNet

TINY_NET = {"_target_": "hypercut.models.MultiFrameUNet", "num_frames": 7, "base_channels": 8, "depth": 2, "max_channels": 16}


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    """An untrained tiny deblurring net saved as a weights file."""
    net = MultiFrameUNet(num_frames=7, base_channels=8, depth=2, max_channels=16)
    return save_weights(net, tmp_path / "tiny.pt", TINY_NET)


def _cli(command: str, args: list[str], cwd: Path, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a console script of this environment (or, with ``code``, Python code) in ``cwd``."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", code, *args] if code else [str(Path(sys.executable).parent / command), *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_input_paths_take_one_path_or_a_list() -> None:
    assert tasks.input_paths("photo.jpg") == [Path("photo.jpg")]
    assert tasks.input_paths(["a.jpg", "dir/"]) == [Path("a.jpg"), Path("dir")]
    with pytest.raises(tasks.ConfigError, match="inputs"):
        tasks.input_paths([])


def test_infer_one_image_without_brackets_and_without_lightning(tiny_dataset: Path, tiny_weights: Path, tmp_path: Path) -> None:
    """`hypercut-infer inputs=photo.png` is one input (not one per character), and loads no Lightning."""
    blurry = sorted(tiny_dataset.glob("*/blur.png"))[0]
    code = (
        "import sys; from hypercut.cli import infer_main; sys.argv = ['hypercut-infer', *sys.argv[1:]]\n"
        "try:\n    infer_main()\nfinally:\n    print('lightning imported:', 'lightning' in sys.modules)"
    )
    result = _cli("", [f"weights={tiny_weights}", f"inputs={blurry}", "formats=[png]", "hydra.run.dir=out"], tmp_path, code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "lightning imported: False" in result.stdout
    assert len(list((tmp_path / "out").rglob("*.png"))) == 7


def test_every_task_takes_a_relative_data_root(
    make_tiny_dataset, tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    make_tiny_dataset("data/tiny")
    monkeypatch.chdir(tmp_path)
    root = "data/tiny"
    common = ["data.batch_size=2", "data.crop_size=32", "logger=csv"]
    tasks.train(
        tasks.compose("train", ["data=folder", f"data.root={root}", *common, "model/net=tiny", "debug=fdr"], output_dir="runs/t")
    )
    metrics = tasks.evaluate(tasks.compose("eval", [f"data.root={root}", f"weights={tiny_weights}"], output_dir="runs/e"))
    assert "test/ppsnr" in metrics
    spec = {
        "_target_": "hypercut.ordering.OrderingModel",
        "encoder": {"_target_": "hypercut.ordering.PairEncoder", "width": 8, "dims": [8], "num_res_blocks": 1, "out_dim": 8},
        "hyperplane": {"_target_": "hypercut.ordering.Hyperplane", "dim": 8},
    }
    ordering = save_weights(build_from_spec(spec), tmp_path / "ordering.pt", spec)
    stats = tasks.label_order(
        tasks.compose("label_order", [f"data.root={root}", f"ordering_weights={ordering}"], output_dir="runs/l")
    )
    assert stats["samples"] == 6 and Path(stats["output"]) == Path(root) / "metadata_ordered.json"
    report = tasks.infer(tasks.compose("infer", [f"weights={tiny_weights}", f"inputs={root}/00000/blur.png", "formats=[png]"], output_dir="runs/i"))
    assert not report.failed


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("hypercut-eval", [], "hypercut-eval: error: missing value for weights: add weights=..."),
        ("hypercut-train", ["model/net=tiny"], "hypercut-train: error: model/loss=HyperCUTLoss needs a trained ordering model"),
        ("hypercut-train", ["-m", "model/net=tiny"], "hypercut-train: error: model/loss=HyperCUTLoss needs"),
    ],
)
def test_a_config_mistake_is_one_line_and_leaves_no_run_folder(command: str, args: list[str], message: str, tmp_path: Path) -> None:
    result = _cli(command, args, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message) and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_tensorboard_missing_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as on a plain `pip install hypercut`
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    cfg = tasks.compose("train", ["logger=many"], output_dir=tmp_path)
    with pytest.raises(tasks.ConfigError, match=r"logger.tensorboard: .*pip install 'hypercut\[tensorboard\]'"):
        tasks.build_loggers(cfg)


def test_a_tiny_training_run_prints_each_line_once_and_no_known_noise(tiny_dataset: Path, tmp_path: Path) -> None:
    """The default loss on a random ordering model, with W&B: a screenful, nothing twice, no warnings."""
    result = _cli(
        "hypercut-train",
        [
            "data=folder", f"data.root={tiny_dataset}", "data.batch_size=2", "data.crop_size=32", "model/net=tiny",
            "logger=wandb", "ordering_weights=untrained", "trainer.max_steps=2", "model.scheduler.warmup_steps=1",
            "trainer.log_every_n_steps=1", "hydra.run.dir=runs/tiny",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.rstrip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    text = "\n".join(lines)
    messages = [re.sub(r"^(INFO|WARNING|ERROR): ", "", line) for line in lines if not set(line) & set("━┃│┏└")]
    repeated = [line for line, n in Counter(messages).items() if n > 1]
    assert not repeated, text
    for noise in ("litlogger", "module(s) in eval mode", "anonymous setting", "/-2", "Test metric", "LeafSpec"):
        assert noise not in text, f"{noise!r} in:\n{text}"
    assert len(lines) <= 40, text
    assert "test: identity_ppsnr" in text and "wandb sync" in text
    assert (tmp_path / "runs" / "tiny" / "train.log").is_file()

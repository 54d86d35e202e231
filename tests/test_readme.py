"""Every `hypercut-*` command of the README composes (the Hydra ones) or parses (`hypercut-data`), and
the pip user's "first minute" runs as written (with tiny sizes)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from hypercut.cli import _data_parser

README = Path(__file__).resolve().parents[1] / "README.md"
CONFIGS = {"hypercut-train": "train", "hypercut-eval": "eval", "hypercut-label-order": "label_order", "hypercut-infer": "infer", "hypercut-export": "export"}


def _bash_blocks(text: str) -> list[list[str]]:
    return [block.splitlines() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def readme_commands() -> list[list[str]]:
    """The README's `hypercut-*` command lines (code blocks and inline code), split, comments dropped."""
    text = README.read_text()
    lines = [line for block in _bash_blocks(text) for line in block]
    lines += re.findall(r"`(hypercut-[a-z-]+ [^`]*)`", text)
    return [shlex.split(line.split(" #")[0]) for line in lines if line.startswith("hypercut-")]


def _one_job(arg: str) -> str:
    """A multirun sweep ``key=a,b,c`` as its first job ``key=a``; list values stay as they are."""
    key, sep, value = arg.partition("=")
    return f"{key}={value.split(',')[0]}" if sep and "," in value and not value.startswith("[") else arg


def test_the_readme_has_the_commands_this_test_checks() -> None:
    commands = {line[0] for line in readme_commands()}
    assert set(CONFIGS) | {"hypercut-data"} <= commands, commands


@pytest.mark.parametrize("line", readme_commands(), ids=lambda line: " ".join(line)[:80])
def test_every_readme_command_composes_or_parses(line: list[str]) -> None:
    command = line[0]
    args = [a.replace("<time>", "2026-01-01_00-00-00") for a in line[1:] if a != "-m"]  # the README's placeholder
    if command == "hypercut-data":
        _data_parser().parse_args(args)
        return
    with initialize_config_module(config_module="hypercut.conf", version_base="1.3"):
        cfg = compose(CONFIGS[command], [_one_job(a) for a in args], return_hydra_config=True)
    assert cfg.task_name


def _first_minute() -> list[list[str]]:
    (block,) = [b for b in _bash_blocks(README.read_text()) if b and b[0].startswith("pip install")]
    return [shlex.split(line.split(" #")[0]) for line in block[1:]]


TINY = {"data.num_samples": "24", "data.size": "[32,32]", "data.crop_size": "32", "data.batch_size": "4", "trainer.max_steps": "2"}


@pytest.mark.slow
def test_the_first_minute_runs_as_written(tmp_path: Path) -> None:
    """The README's pip block, in a fresh folder, with tiny data and 2 steps instead of 500."""
    from PIL import Image

    Image.new("RGB", (40, 32), (120, 60, 30)).save(tmp_path / "photo.jpg")
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    for line in _first_minute():
        args = []
        for arg in line[1:]:
            key, _, value = arg.partition("=")
            if "<time>" in value:  # the newest run of that task
                task = value.split("/")[1]
                latest = sorted((tmp_path / "runs" / task).iterdir())[-1]
                value = value.replace(f"runs/{task}/<time>", str(latest.relative_to(tmp_path)))
            args.append(f"{key}={TINY.get(key, value)}" if value else arg)
        if line[0] == "hypercut-train":
            args += [f"{k}={v}" for k, v in TINY.items() if not any(a.startswith(f"{k}=") for a in args)]
            args.append("+trainer.limit_val_batches=1")
            if "experiment=ordering" in args:
                args += ["model/encoder=small", "model.encoder.width=8", "model.encoder.dims=[8,8]", "model.encoder.out_dim=8"]
            else:
                args += ["model/net=tiny", "model.scheduler.warmup_steps=1"]
        script = Path(sys.executable).parent / line[0]
        result = subprocess.run([str(script), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, (line, result.stderr[-3000:])
    assert len(list((tmp_path / "runs" / "infer").rglob("*.png"))) == 7

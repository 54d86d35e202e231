"""Bad input, hostile files and interruptions: each case of docs/RELIABILITY.md fails cleanly.

Weights files that name code, remote checkpoints, diverged ordering runs, corrupt images, stale or
concurrent packed stores, SIGTERM, resumes and outputs that would be overwritten.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hypercut import tasks
from hypercut.export import FORMAT, build_from_spec, load_pretrained, save_weights
from hypercut.models import MultiFrameUNet

TINY_NET = {"_target_": "hypercut.models.MultiFrameUNet", "num_frames": 3, "base_channels": 8}


def _file_writer(target: Path) -> dict:
    """A spec that, built by Hydra's ``instantiate``, writes ``target``."""
    write = {"_target_": "pathlib.Path.write_text", "_args_": [{"_target_": "pathlib.Path", "_args_": [str(target)]}, "x"]}
    return {"_target_": "hypercut.tasks.instantiate", "config": [write]}


# ------------------------------------------------------------------------------------------- weights
@pytest.mark.parametrize(
    "where",
    ["top", "nested", "in_list"],
)
def test_weights_spec_naming_code_is_refused_and_builds_nothing(tmp_path: Path, where: str) -> None:
    target = tmp_path / "written.txt"
    gadget = _file_writer(target)
    if where == "top":
        spec, key = gadget, "spec._target_"
    elif where == "nested":
        spec = {"_target_": "hypercut.ordering.OrderingModel", "encoder": {"_target_": "hypercut.data.synth.synthesize_dataset", "out": str(tmp_path / "ds")}, "hyperplane": gadget}
        key = "spec.encoder._target_"
    else:
        spec, key = {**TINY_NET, "extra": [gadget]}, "spec.extra[0]._target_"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "spec": spec, "state_dict": {}}, path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: {key}: ")):
        load_pretrained(path)
    assert not target.exists() and not (tmp_path / "ds").exists()


def test_checkpoint_hyper_parameters_spec_naming_code_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "written.txt"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"net_spec": _file_writer(target)}}, ckpt)
    with pytest.raises(ValueError, match=rf"{ckpt}: hyper_parameters.net_spec._target_"):
        tasks.export_checkpoint(ckpt, tmp_path / "out.pt")
    assert not target.exists() and not (tmp_path / "out.pt").exists()


def test_only_module_classes_are_allowed() -> None:
    from hypercut.export import MODEL_CLASSES

    assert all(isinstance(c, type) and issubclass(c, torch.nn.Module) for c in MODEL_CLASSES)
    with pytest.raises(ValueError, match=r"w.pt: spec._target_: 'hypercut.export.save_weights'"):
        build_from_spec({"_target_": "hypercut.export.save_weights"}, "w.pt")
    with pytest.raises(ValueError, match=r"spec._partial_: only _target_"):
        build_from_spec({**TINY_NET, "_partial_": True})
    assert isinstance(build_from_spec(TINY_NET), MultiFrameUNet)


def test_export_refuses_to_overwrite_its_checkpoint(tmp_path: Path) -> None:
    net = build_from_spec(TINY_NET)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "hyper_parameters": {"net_spec": TINY_NET}}, ckpt)
    before = ckpt.read_bytes()
    with pytest.raises(ValueError, match="would replace the checkpoint"):
        tasks.export(tasks.compose("export", [f"ckpt={ckpt}", f"out={tmp_path / '.' / 'last.ckpt'}"], output_dir=tmp_path))
    assert ckpt.read_bytes() == before
    assert load_pretrained(tasks.export_checkpoint(ckpt, tmp_path / "w.pt")).num_frames == 3


def test_non_finite_weights_are_not_exported(tmp_path: Path) -> None:
    net = build_from_spec(TINY_NET)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite weights"):
        save_weights(net, tmp_path / "w.pt", TINY_NET)
    assert not (tmp_path / "w.pt").exists()


# ------------------------------------------------------------------------------------------- runs
def _train_overrides(root: Path, out: Path, steps: int) -> list[str]:
    return [
        f"paths.root_dir={out.parent}",
        "data=folder",
        f"data.root={root}",
        "data.batch_size=2",
        "data.crop_size=32",
        "logger=csv",
        "model/net=tiny",
        "model/loss=naive",
        "model.scheduler.warmup_steps=1",
        f"trainer.max_steps={steps}",
        "trainer.log_every_n_steps=1",
        "+trainer.limit_val_batches=1",
        "+trainer.enable_progress_bar=false",
        "test=false",
    ]


def _train(root: Path, out: Path, steps: int, extra: list[str] = ()) -> None:  # type: ignore[assignment]
    tasks.train(tasks.compose("train", [*_train_overrides(root, out, steps), *extra], output_dir=out))


class _Payload:
    """Unpickling this runs code: it writes ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return exec, (f"open({self.path!r}, 'w').write('ran')",)


def test_remote_checkpoint_is_refused_before_any_request(tiny_dataset: Path, tmp_path: Path) -> None:
    import http.server
    import threading

    ran = tmp_path / "ran.txt"
    served = tmp_path / "www"
    served.mkdir()
    torch.save({"state_dict": _Payload(ran)}, served / "x.ckpt")
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, format: str, *args) -> None:  # type: ignore[no-untyped-def]
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/x.ckpt"
    try:
        with pytest.raises(ValueError, match="remote checkpoints are not loaded"):
            _train(tiny_dataset, tmp_path / "run", steps=2, extra=[f"ckpt_path={url}"])
    finally:
        server.shutdown()
    assert not ran.exists() and requests == []


def test_resume_keeps_the_csv_history_and_a_bad_checkpoint_is_named(make_tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = make_tiny_dataset("resume", num_samples=6, partitions=["train"] * 4 + ["val"] * 2)
    run = tmp_path / "run"
    _train(root, run, steps=2)
    history = run / "csv" / "metrics.csv"
    before = history.read_text()
    assert before.count("\n") > 2

    last = run / "checkpoints" / "last.ckpt"
    good = last.read_bytes()
    last.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=re.escape(f"{last} is not a readable checkpoint")):
        _train(root, run, steps=4, extra=["ckpt_path=last"])
    assert history.read_text() == before

    last.write_bytes(good)
    _train(root, run, steps=4, extra=["ckpt_path=last"])
    assert history.read_text() == before
    resumed = (run / "csv" / "resume_1" / "metrics.csv").read_text()
    assert "train/loss" in resumed and resumed.count("\n") > 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_signal_writes_checkpoint_weights_metrics_and_exits_non_zero(tiny_dataset: Path, tmp_path: Path, signum: int) -> None:
    run = tmp_path / "run"
    args = [*_train_overrides(tiny_dataset, run, steps=100_000), f"hydra.run.dir={run}", "+logger.csv.flush_logs_every_n_steps=1"]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    script = Path(sys.executable).parent / "hypercut-train"
    proc = subprocess.Popen([str(script), *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    history = run / "csv" / "metrics.csv"
    deadline = time.monotonic() + 120
    while not (history.is_file() and history.read_text().count("train/loss") and history.read_text().count("\n") > 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    proc.send_signal(signum)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signum, output[-3000:]
    step = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert step >= 1
    assert load_pretrained(run / "weights.pt").num_frames == 7
    assert "train/loss" in json.loads((run / "metrics.json").read_text())


# ------------------------------------------------------------------------------------------- ordering
def test_nan_scores_are_not_consistent() -> None:
    from hypercut.metrics.ordering import OrderingMetrics

    metrics = OrderingMetrics(3)
    u = torch.tensor([[1.0, 2.0, 3.0], [float("nan")] * 3, [1.0, float("nan"), 2.0], [-1.0, -1.0, float("nan")]])
    metrics.update(u, -u)
    values = metrics.compute()
    assert values["con2"].item() == pytest.approx(2 / 4)
    assert values["con3"].item() == pytest.approx(1 / 4)


def test_diverging_ordering_run_stops_and_writes_no_weights(tiny_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = [
        *_train_overrides(tiny_dataset, run, steps=6),
        "experiment=ordering",
        "validate_untrained=false",
        "model.optimizer.lr=1e30",
        "model/encoder=small",
        "model.encoder.width=8",
        "model.encoder.dims=[8,8]",
        "model.encoder.num_res_blocks=1",
        "model.encoder.out_dim=8",
    ]
    for deblur_only in ("model/net=tiny", "model/loss=naive", "model.scheduler.warmup_steps=1"):
        overrides.remove(deblur_only)
    with pytest.raises(FloatingPointError, match=r"non-finite training loss \(nan\) at step \d+, batch 0, sample ids"):
        tasks.train(tasks.compose("train", overrides, output_dir=run))
    assert not (run / "weights.pt").exists()

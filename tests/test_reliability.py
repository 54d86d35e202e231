"""Bad input, hostile files and interruptions: each case of docs/RELIABILITY.md fails cleanly.

Weights files that name code, remote checkpoints, diverged ordering runs, corrupt images, stale or
concurrent packed stores, SIGTERM, resumes and outputs that would be overwritten.
"""

from __future__ import annotations

import re
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

"""``init_weights``: a deblurring run starts from a weights file (fine-tuning), with clear errors."""

from __future__ import annotations

import pytest
import torch

from hypercut import tasks
from hypercut.export import save_weights, spec_of
from hypercut.models import MultiFrameUNet

TINY = {"num_frames": 7, "base_channels": 8, "depth": 2, "max_channels": 16}


def _compose(tmp_path, *overrides: str):
    return tasks.compose(
        "train", ["model/net=tiny", "model/loss=naive", f"paths.root_dir={tmp_path}", *overrides], output_dir=tmp_path / "run"
    )


def test_init_weights_loads_the_net(tmp_path) -> None:
    source = MultiFrameUNet(**TINY)
    for p in source.parameters():
        torch.nn.init.normal_(p, std=0.02)
    path = save_weights(source, tmp_path / "w.pt", spec_of(source, **TINY))
    module = tasks.build_module(_compose(tmp_path, f"init_weights={path}"))
    for key, value in source.state_dict().items():
        assert torch.equal(module.net.state_dict()[key], value), key
    fresh = tasks.build_module(_compose(tmp_path))
    assert not torch.equal(fresh.net.head.weight, source.head.weight)


def test_init_weights_that_do_not_fit_are_one_clear_error(tmp_path) -> None:
    other = MultiFrameUNet(num_frames=7, base_channels=4, depth=2, max_channels=8)
    path = save_weights(other, tmp_path / "w.pt", spec_of(other, num_frames=7, base_channels=4, depth=2, max_channels=8))
    with pytest.raises(tasks.ConfigError, match="init_weights=.*does not fit"):
        tasks.build_module(_compose(tmp_path, f"init_weights={path}"))

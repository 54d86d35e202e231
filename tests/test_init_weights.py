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


SMALL_WARP = {"num_frames": 5, "width": 8, "enc_blocks": [1, 1], "mid_blocks": 1, "dec_blocks": [1, 1]}


def test_init_weights_into_a_deeper_net_computes_the_same_video(tmp_path) -> None:
    """More NAFNet blocks per level than the weights have: the new ones start as the identity."""
    from hypercut.models import MotionWarpNet

    source = MotionWarpNet(**SMALL_WARP)
    for p in source.parameters():
        torch.nn.init.normal_(p, std=0.05)  # branch scales and heads non-zero: a "trained" net
    path = save_weights(source, tmp_path / "w.pt", spec_of(source, **SMALL_WARP))
    deeper = "model.net.enc_blocks=[2,1] model.net.mid_blocks=3 model.net.dec_blocks=[1,2]".split()
    cfg = tasks.compose(
        "train",
        ["model/net=motion_warp", "model/loss=naive", "num_frames=5", "model.net.width=8", f"paths.root_dir={tmp_path}",
         f"init_weights={path}", *deeper],
        output_dir=tmp_path / "run",
    )
    net = tasks.build_module(cfg).net
    assert sum(p.numel() for p in net.parameters()) > sum(p.numel() for p in source.parameters())
    blurry = torch.rand(2, 3, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(blurry), source.eval()(blurry))


def test_a_block_partly_in_the_weights_is_an_error() -> None:
    from hypercut.models import MotionWarpNet, load_with_new_blocks

    state = MotionWarpNet(**SMALL_WARP).state_dict()
    del state["trunk.middle.0.beta"]
    with pytest.raises(RuntimeError, match="partly"):
        load_with_new_blocks(MotionWarpNet(**SMALL_WARP), state)

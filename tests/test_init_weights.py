"""``init_weights``: a deblurring run starts from a weights file (fine-tuning), with clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from hypercut import tasks
from hypercut.export import load_pretrained, save_weights, spec_of
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


def test_a_fine_tune_that_never_beats_its_start_exports_the_start(tiny_dataset, tmp_path) -> None:
    """validate_untrained: the weights before training compete with every later validation for export."""
    from hypercut.models import MotionWarpNet

    source = MotionWarpNet(**SMALL_WARP)  # zero heads: the identity, which a wild learning rate cannot beat
    path = save_weights(source, tmp_path / "w.pt", spec_of(source, **SMALL_WARP))
    cfg = tasks.compose(
        "train",
        ["model/net=motion_warp", "model/loss=naive", "num_frames=7", *(f"model.net.{k}={v}" for k, v in SMALL_WARP.items() if k != "num_frames"),
         f"init_weights={path}", "validate_untrained=true", "model.optimizer.lr=0.5", "model.scheduler.warmup_steps=1",
         "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.check_val_every_n_epoch=null",
         f"paths.root_dir={tmp_path}", "data=folder", f"data.root={tiny_dataset}", "data.batch_size=2", "data.crop_size=32",
         "logger=csv", "+trainer.enable_progress_bar=false"],
        output_dir=tmp_path / "run",
    )  # fmt: skip
    tasks.train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    (state,) = [v for k, v in best["callbacks"].items() if k.startswith("ModelCheckpoint") and v.get("monitor")]
    assert float(state["best_model_score"]) < metrics["untrained/ppsnr"]  # training only made it worse
    exported = load_pretrained(tmp_path / "run" / "weights.pt")
    for key, value in source.state_dict().items():
        assert torch.equal(exported.state_dict()[key], value), key
    assert metrics["test/ppsnr"] == pytest.approx(metrics["test/identity_ppsnr"])  # tested: the identity it started as

"""The LightningModules' shared parts: the warm-up cosine schedule, the progress bar, the media callback
and the optimizer configuration."""

from __future__ import annotations

import math

import pytest
import torch

from hypercut.lit import warmup_cosine


def _closed_form(step: int, total: int, warmup: int, min_factor: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


@pytest.mark.parametrize("warmup", [0, 1, 5])
def test_warmup_cosine_is_linear_warmup_then_half_cosine(warmup: int) -> None:
    total, base, min_factor = 20, 0.5, 0.05
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = warmup_cosine(optimizer, total_steps=total, warmup_steps=warmup, min_factor=min_factor)
    rates = []
    for _ in range(total + 1):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [base * _closed_form(s, total, warmup, min_factor) for s in range(total + 1)]
    assert rates == pytest.approx(expected, rel=1e-6)
    assert rates[-1] == pytest.approx(base * min_factor)


def test_warmup_cosine_refuses_groups_with_different_rates() -> None:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.2}])
    with pytest.raises(ValueError, match="one learning rate"):
        warmup_cosine(optimizer, total_steps=10)


def _tiny_deblur() -> torch.nn.Module:
    from hypercut.lit import DeblurLitModule
    from hypercut.losses import NaiveLoss
    from hypercut.models import MultiFrameUNet

    return DeblurLitModule(net=MultiFrameUNet(num_frames=7, base_channels=8, depth=2, max_channels=16), loss=NaiveLoss())


def _trainer(tmp_path, callbacks):  # type: ignore[no-untyped-def]
    import lightning as L

    return L.Trainer(
        max_steps=1, limit_val_batches=1, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
        callbacks=callbacks,
    )


def test_validation_media_writes_a_strip_and_a_gif_per_sample(tiny_dataset, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from hypercut.data import BlurSequenceDataModule
    from hypercut.lit import ValidationMedia

    datamodule = BlurSequenceDataModule(tiny_dataset, batch_size=2, crop_size=32)
    _trainer(tmp_path, [ValidationMedia(num_samples=2, dirpath=tmp_path / "media")]).fit(_tiny_deblur(), datamodule=datamodule)
    files = sorted(p.name for p in (tmp_path / "media").iterdir())
    assert files == [f"step0000001_sample{i}.{ext}" for i in range(2) for ext in ("gif", "png")]
    strip = Image.open(tmp_path / "media" / "step0000001_sample0.png")
    assert strip.height > 2 * 32  # blurry, prediction and ground-truth rows of 32x40 frames


def test_validation_media_ignores_modules_that_return_no_video(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hypercut.lit import OrderingLitModule, ValidationMedia
    from hypercut.ordering import Hyperplane, OrderingModel, PairEncoder

    net = OrderingModel(PairEncoder(width=8, dims=(8,), num_res_blocks=1, out_dim=8), Hyperplane(8))
    batch = {"sharp": torch.rand(2, 7, 3, 16, 16), "blurry": torch.rand(2, 3, 16, 16), "id": ["a", "b"]}
    loader = torch.utils.data.DataLoader([batch], batch_size=None)
    _trainer(tmp_path, [ValidationMedia(dirpath=tmp_path / "media")]).fit(OrderingLitModule(net), loader, loader)
    assert not (tmp_path / "media").exists()


def test_configure_optimizers_trains_only_trainable_parameters_with_the_interval() -> None:
    from functools import partial

    from hypercut.lit import configure_optimizers

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    net[0].requires_grad_(False)
    config = configure_optimizers(net, partial(torch.optim.SGD, lr=0.1), partial(torch.optim.lr_scheduler.StepLR, step_size=1), "step")
    (group,) = config["optimizer"].param_groups
    assert [p.shape for p in group["params"]] == [p.shape for p in net[1].parameters()]
    assert config["lr_scheduler"]["interval"] == "step"
    assert isinstance(configure_optimizers(net, partial(torch.optim.SGD, lr=0.1), None), torch.optim.SGD)


def test_ordering_checkpoints_from_before_the_net_rename_still_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hypercut import tasks
    from hypercut.export import load_pretrained
    from hypercut.lit import OrderingLitModule
    from hypercut.ordering import Hyperplane, OrderingModel, PairEncoder

    spec = {
        "_target_": "hypercut.ordering.OrderingModel",
        "encoder": {"_target_": "hypercut.ordering.PairEncoder", "width": 8, "dims": [8], "num_res_blocks": 1, "out_dim": 8},
        "hyperplane": {"_target_": "hypercut.ordering.Hyperplane", "dim": 8},
    }
    old = OrderingModel(PairEncoder(width=8, dims=(8,), num_res_blocks=1, out_dim=8), Hyperplane(8))
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in old.state_dict().items()}, "hyper_parameters": {"model_spec": spec}}
    module = OrderingLitModule(OrderingModel(PairEncoder(width=8, dims=(8,), num_res_blocks=1, out_dim=8), Hyperplane(8, seed=1)))
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    assert checkpoint["hyper_parameters"] == {"net_spec": spec}
    sharp = torch.rand(1, 7, 3, 16, 16)
    torch.testing.assert_close(module(sharp), old(sharp))

    torch.save({"state_dict": {f"model.{k}": v for k, v in old.state_dict().items()}, "hyper_parameters": {"model_spec": spec}}, tmp_path / "old.ckpt")
    exported = tasks.export_checkpoint(tmp_path / "old.ckpt", tmp_path / "old.pt")
    torch.testing.assert_close(load_pretrained(exported)(sharp), old(sharp))

"""CUDA checks (``pytest -m gpu``; skipped without CUDA): bf16 autocast + channels_last through every
backbone and the ordering model, metrics on CUDA tensors equal to the CPU values, and 20-step
Lightning fits of both LightningModules with ``precision="bf16-mixed"``.

Self-contained on purpose: no fixture from ``conftest.py`` (which needs Pillow and writes files), tiny
in-memory data, nothing written outside pytest's ``tmp_path``. On a machine that lacks the test
suite's other dependencies run it as::

    PYTHONPATH=src python -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider --noconftest

The checks are written as functions of a device so they can be tried on the CPU as well
(``check_backbone_bf16("jin", "cpu")``); the tests call them with ``"cuda"``. No timing is asserted.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from hypercut.losses import HyperCUTOrderingLoss, NaiveLoss
from hypercut.metrics import VideoMetrics
from hypercut.models import JinBlur2Vid, MultiFrameUNet, PurohitBlur2Vid, UNetConvLSTM
from hypercut.ordering import Hyperplane, OrderingModel, PairEncoder
from hypercut.perf import autocast, optimize_for_speed

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

T = 7
H, W = 67, 93  # odd, a multiple of none of the backbones' paddings

TINY_BACKBONES: dict[str, Callable[[], nn.Module]] = {
    "multiframe_unet": lambda: MultiFrameUNet(num_frames=T, base_channels=8, depth=3, max_channels=32),
    "unet_convlstm": lambda: UNetConvLSTM(num_frames=T, base_channels=4, depth=3, max_channels=16),
    "purohit": lambda: PurohitBlur2Vid(num_frames=T, base_channels=4, latent_channels=8, hidden_channels=8,
                                       center_base_channels=4, center_depth=2),
    "jin": lambda: JinBlur2Vid(num_frames=T, center_width=8, side_width=8, center_plain_blocks=1,
                               inner_plain_blocks=1, outer_plain_blocks=1, center_dilations=((2, 4),),
                               side_dilations=((2, 4),), center_refine_width=4, side_refine_width=4),
}


def _randomise_zero_heads(net: nn.Module, seed: int = 0) -> None:
    """Zero-initialised output layers make an untrained net the identity; give them small weights so
    the bf16 and fp32 outputs differ where they would in training."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)


# ----------------------------------------------------------------------------------------------------
# Checks, as functions of the device
# ----------------------------------------------------------------------------------------------------
def check_backbone_bf16(name: str, device: str) -> None:
    torch.manual_seed(0)
    net = TINY_BACKBONES[name]()
    _randomise_zero_heads(net)
    net = net.to(device)
    gen = torch.Generator().manual_seed(1)
    blurry = torch.rand(2, 3, H, W, generator=gen).to(device)
    sharp = torch.rand(2, T, 3, H, W, generator=gen).to(device)
    with torch.no_grad():
        reference = net(blurry).float()

    module = optimize_for_speed(net, channels_last=True)
    with autocast(device, "bf16"):
        pred = module(blurry.contiguous(memory_format=torch.channels_last))
    assert pred.shape == (2, T, 3, H, W)
    assert torch.isfinite(pred).all()
    # bf16 keeps ~3 significant digits: the outputs agree to well within the image range.
    err = (pred.float() - reference).abs().max().item()
    assert err < 0.05 + 0.05 * reference.abs().max().item(), f"{name}: bf16 differs from fp32 by {err}"

    loss = NaiveLoss()(pred.float(), sharp)["loss"]
    loss.backward()
    # (Purohit's stage-1 video encoder is not on the blurry -> video path and gets no gradient.)
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads), f"{name}: non-finite gradients"
    assert any(g.abs().sum() > 0 for g in grads)


def check_ordering_bf16(device: str) -> None:
    torch.manual_seed(0)
    model = OrderingModel(PairEncoder(), Hyperplane(128, seed=0), antisymmetric=True).to(device)
    sharp = torch.rand(4, T, 3, 64, 64, generator=torch.Generator().manual_seed(2)).to(device)
    with torch.no_grad():
        u32, _ = model(sharp)
    module = optimize_for_speed(model, channels_last=True)
    with autocast(device, "bf16"):
        u, v = module(sharp)
    assert u.shape == v.shape == (4, T // 2)
    assert torch.equal(v, -u)  # antisymmetric scoring stays exact in bf16
    assert torch.isfinite(u).all()
    # Same ordering signal: the bf16 scores track the fp32 ones.
    corr = torch.corrcoef(torch.stack([u.float().flatten(), u32.flatten()]))[0, 1]
    assert corr > 0.98, f"bf16 scores correlate {corr:.4f} with fp32"
    loss = HyperCUTOrderingLoss()(u.float(), v.float())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def check_metrics_device(device: str) -> None:
    gen = torch.Generator().manual_seed(3)
    target = torch.rand(5, T, 3, 24, 28, generator=gen)
    pred = (target + 0.05 * torch.randn(target.shape, generator=gen)).clamp(0, 1)
    pred[1] = pred[1].flip(0)  # one sample predicted in reverse: the p-variant must flip it back
    cpu, dev = VideoMetrics(T, data_range=1.0), VideoMetrics(T, data_range=1.0).to(device)
    for part in (slice(0, 2), slice(2, 5)):  # two batches of different sizes
        cpu.update(pred[part], target[part])
        dev.update(pred[part].to(device), target[part].to(device))
    a, b = cpu.compute(), dev.compute()
    assert a.keys() == b.keys()
    for key in a:
        assert b[key].device.type == torch.device(device).type
        assert torch.allclose(a[key].double(), b[key].double().cpu(), rtol=0, atol=1e-6), (
            f"{key}: cpu {a[key].item()} vs {device} {b[key].item()}"
        )
    assert float(b["reversed_frac"]) == pytest.approx(0.2)


def _moving_square_sequences(n: int, size: int = 32, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` sequences of a square moving left or right over a gradient; blurry = their mean."""
    gen = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0.1, 0.6, size)
    sharp = ramp.view(1, 1, 1, 1, size).expand(n, T, 3, size, size).clone()
    side = size // 4
    for i in range(n):
        y = int(torch.randint(0, size - side, (1,), generator=gen))
        x0 = int(torch.randint(0, size - side - T, (1,), generator=gen))
        step = 1 if torch.rand((), generator=gen) < 0.5 else -1
        colour = torch.rand(3, 1, 1, generator=gen) * 0.4 + 0.6
        for t in range(T):
            x = x0 + (t if step > 0 else T - 1 - t)
            sharp[i, t, :, y : y + side, x : x + side] = colour
    return sharp.mean(1), sharp


def _loader(items: list[dict[str, object]], batch_size: int, shuffle: bool) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=shuffle)  # type: ignore[arg-type]


def _import_lit() -> types.ModuleType:
    """``hypercut.lit`` (PyAV is imported only where videos are written, so a bare GPU box is fine)."""
    import hypercut.lit

    return hypercut.lit


def _trainer(device: str, tmp_path: object, max_steps: int = 20):  # noqa: ANN202
    import lightning as L

    return L.Trainer(
        accelerator="gpu" if device.startswith("cuda") else "cpu",
        devices=1,
        precision="bf16-mixed",
        max_steps=max_steps,
        limit_val_batches=2,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )


def check_ordering_fit(device: str, tmp_path: object) -> None:
    lit = _import_lit()
    _, sharp = _moving_square_sequences(48, seed=4)
    items = [{"sharp": sharp[i], "id": f"{i:03d}"} for i in range(len(sharp))]
    torch.manual_seed(0)
    encoder = PairEncoder(width=8, dims=(16, 16, 16), num_res_blocks=1)
    module = lit.OrderingLitModule(OrderingModel(encoder, Hyperplane(encoder.out_dim)), num_frames=T)
    trainer = _trainer(device, tmp_path)
    trainer.fit(module, _loader(items[:40], 4, True), _loader(items[40:], 4, False))
    assert trainer.global_step == 20
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    assert "val/con3" in metrics and 0.0 <= float(metrics["val/con3"]) <= 1.0
    assert next(module.parameters()).device.type == torch.device(device).type


def check_deblur_fit(device: str, tmp_path: object) -> None:
    lit = _import_lit()
    blurry, sharp = _moving_square_sequences(48, seed=5)
    items = [{"blurry": blurry[i], "sharp": sharp[i], "id": f"{i:03d}"} for i in range(len(sharp))]
    torch.manual_seed(0)
    net = MultiFrameUNet(num_frames=T, base_channels=8, depth=2, max_channels=16)
    module = lit.DeblurLitModule(net=net, loss=NaiveLoss(), num_frames=T,
                                 optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3))
    trainer = _trainer(device, tmp_path)
    trainer.fit(module, _loader(items[:40], 4, True), _loader(items[40:], 4, False))
    assert trainer.global_step == 20
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    for key in ("val/ppsnr", "val/ppsnr_f1", "val/identity_ppsnr"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert next(module.net.parameters()).device.type == torch.device(device).type


# ----------------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(TINY_BACKBONES))
def test_backbone_bf16_channels_last_cuda(name: str) -> None:
    check_backbone_bf16(name, "cuda")


def test_ordering_model_bf16_cuda() -> None:
    check_ordering_bf16("cuda")


def test_video_metrics_cuda_equal_cpu() -> None:
    check_metrics_device("cuda")


def test_ordering_litmodule_fit_bf16_cuda(tmp_path: object) -> None:
    check_ordering_fit("cuda", tmp_path)


def test_deblur_litmodule_fit_bf16_cuda(tmp_path: object) -> None:
    check_deblur_fit("cuda", tmp_path)

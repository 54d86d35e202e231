"""Per-frame PSNR / SSIM against scikit-image, p-metric choice, batching and DDP."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from hypercut.metrics import VideoMetrics, psnr_per_frame, sequence_scores, ssim_per_frame
from hypercut.metrics.functional import _filter_torch, _gaussian_filter

skmetrics = pytest.importorskip("skimage.metrics")


def _rand(shape: tuple[int, ...], seed: int) -> Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _structured(b: int, t: int, h: int, w: int, seed: int) -> tuple[Tensor, Tensor]:
    """Smooth gradients, stripes and a flat patch, with a shifted, noisier and darker prediction."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    frames = []
    for i in range(b * t):
        phase = float(torch.rand((), generator=g)) * 6.28
        r = 0.5 + 0.5 * torch.sin(12 * xx + phase)
        gr = yy * 0.8 + 0.1
        bl = ((xx * 5 + yy * 3 + i).floor() % 2) * 0.7 + 0.1
        img = torch.stack([r, gr, bl])
        img[:, h // 3 : h // 2, w // 3 : w // 2] = 0.5  # flat patch: zero variance in the window
        frames.append(img)
    target = torch.stack(frames).view(b, t, 3, h, w)
    pred = (0.9 * target.roll(1, dims=-1) + 0.03 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    return pred, target


def _sk_psnr(pred: Tensor, target: Tensor, data_range: float) -> np.ndarray:
    b, t = pred.shape[:2]
    out = np.empty((b, t))
    for i in range(b):
        for j in range(t):
            out[i, j] = skmetrics.peak_signal_noise_ratio(
                target[i, j].double().numpy(), pred[i, j].double().numpy(), data_range=data_range
            )
    return out


def _sk_ssim(pred: Tensor, target: Tensor, data_range: float) -> np.ndarray:
    b, t = pred.shape[:2]
    out = np.empty((b, t))
    for i in range(b):
        for j in range(t):
            out[i, j] = skmetrics.structural_similarity(
                pred[i, j].double().numpy(),
                target[i, j].double().numpy(),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=data_range,
                channel_axis=0,
            )
    return out


# ----------------------------------------------------------------------------------------------------
# Functional forms vs scikit-image
# ----------------------------------------------------------------------------------------------------
def _cases() -> dict[str, tuple[Tensor, Tensor]]:
    target = _rand((2, 3, 3, 23, 31), seed=0)
    return {
        "random": ((target + 0.1 * (_rand(target.shape, seed=1) - 0.5)).clamp(0, 1), target),
        "structured": _structured(2, 3, 29, 40, seed=2),
        "structured_large": _structured(1, 2, 130, 170, seed=5),
    }


# The tolerances documented in hypercut.metrics.functional: float32 inputs are computed in float32.
F32_PSNR_ATOL, F32_SSIM_ATOL, F64_ATOL = 5e-6, 2e-6, 1e-12


@pytest.mark.parametrize("kind", ["random", "structured", "structured_large"])
def test_psnr_ssim_match_skimage(kind: str) -> None:
    pred, target = _cases()[kind]
    psnr = psnr_per_frame(pred, target, data_range=1.0)
    ssim = ssim_per_frame(pred, target, data_range=1.0)
    assert psnr.shape == ssim.shape == pred.shape[:2]
    assert psnr.dtype == ssim.dtype == torch.float32
    np.testing.assert_allclose(psnr.double().numpy(), _sk_psnr(pred, target, 1.0), rtol=0, atol=F32_PSNR_ATOL)
    np.testing.assert_allclose(ssim.double().numpy(), _sk_ssim(pred, target, 1.0), rtol=0, atol=F32_SSIM_ATOL)


@pytest.mark.parametrize("kind", ["structured", "structured_large"])
def test_float64_input_and_other_data_range(kind: str) -> None:
    pred, target = _cases()[kind]
    pred, target = pred.double() * 255, target.double() * 255
    ssim = ssim_per_frame(pred, target, data_range=255.0)
    psnr = psnr_per_frame(pred, target, data_range=255.0)
    assert ssim.dtype == psnr.dtype == torch.float64
    np.testing.assert_allclose(ssim.numpy(), _sk_ssim(pred, target, 255.0), rtol=0, atol=F64_ATOL)
    np.testing.assert_allclose(psnr.numpy(), _sk_psnr(pred, target, 255.0), rtol=0, atol=F64_ATOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opencv_and_torch_filters_agree(dtype: torch.dtype) -> None:
    """The CPU (OpenCV) and other-device (torch) Gaussian filters, both run here on the CPU."""
    x = _rand((4, 40, 53), seed=9).to(dtype)
    a, b = _gaussian_filter(x), _filter_torch(x)
    assert a.shape == b.shape == (4, 30, 43)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-14)


def test_fast_paths_match_plain_computation() -> None:
    """Shared moments (reversal, broadcast identity baseline) and chunking give the plain values."""
    import hypercut.metrics.functional as functional

    pred, target = _structured(2, 7, 33, 41, seed=11)
    pred[1] = pred[1].flip(0)
    blurry = target.mean(1)
    for chunk_values in (1 << 22, 1):  # one chunk of 7 frames; chunks of one mirrored pair
        functional._CHUNK_VALUES, saved = chunk_values, functional._CHUNK_VALUES
        try:
            scores = sequence_scores(pred, target, 1.0)
            identity = sequence_scores(blurry.unsqueeze(1).expand_as(target), target, 1.0)
        finally:
            functional._CHUNK_VALUES = saved
        assert scores.reversed.tolist() == [False, True]
        best = torch.stack([pred[0], pred[1].flip(0)])
        torch.testing.assert_close(scores.ssim, ssim_per_frame(pred, target, 1.0).double(), rtol=0, atol=1e-6)
        torch.testing.assert_close(scores.pssim, ssim_per_frame(best, target, 1.0).double(), rtol=0, atol=1e-6)
        torch.testing.assert_close(scores.ppsnr, psnr_per_frame(best, target, 1.0).double(), rtol=0, atol=1e-5)
        repeated = blurry.unsqueeze(1).repeat(1, 7, 1, 1, 1)  # the same frames, not broadcast
        torch.testing.assert_close(identity.ssim, ssim_per_frame(repeated, target, 1.0).double(), rtol=0, atol=1e-6)
        torch.testing.assert_close(identity.psnr, psnr_per_frame(repeated, target, 1.0).double(), rtol=0, atol=1e-5)
        assert not identity.reversed.any()
        torch.testing.assert_close(identity.pixel_psnr, identity.psnr)


def _sk_pixel_best(pred: Tensor, target: Tensor, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Blur2Vid's per-pixel best direction in numpy: per-frame PSNR and the whole-sequence PSNR."""
    p, y = pred.double().numpy(), target.double().numpy()
    per_frame, whole = [], []
    for i in range(p.shape[0]):
        fwd = ((p[i] - y[i]) ** 2).sum(1)  # (T, H, W)
        rev = ((p[i][::-1] - y[i]) ** 2).sum(1)
        choice = np.where(rev.sum(0) < fwd.sum(0), rev, fwd)
        mse = choice.mean(axis=(1, 2)) / p.shape[2]
        per_frame.append(10 * np.log10(data_range**2 / mse))
        whole.append(10 * np.log10(data_range**2 / mse.mean()))
    return np.stack(per_frame), np.array(whole)


def test_pixel_best_direction_psnr() -> None:
    g = torch.Generator().manual_seed(12)
    target = torch.rand(3, 5, 3, 20, 24, generator=g)
    # Left half of the picture predicted in order, right half reversed; small noise everywhere.
    pred = target.clone()
    pred[..., 12:] = target.flip(1)[..., 12:]
    pred = (pred + 0.02 * torch.randn(pred.shape, generator=g)).clamp(0, 1)
    scores = sequence_scores(pred, target, 1.0)
    per_frame, whole = _sk_pixel_best(pred, target, 1.0)
    np.testing.assert_allclose(scores.pixel_psnr.numpy(), per_frame, rtol=0, atol=F32_PSNR_ATOL)
    np.testing.assert_allclose(scores.pixel_psnr_all.numpy(), whole, rtol=0, atol=F32_PSNR_ATOL)
    # Better than either whole-sample direction: each half is scored in its own direction.
    assert (scores.pixel_psnr_all > scores.ppsnr.mean(1) + 3).all()
    # The metric reports the same numbers, the whole-sequence value as pxpsnr.
    metric = VideoMetrics(num_frames=5, data_range=1.0)
    metric.update(pred, target)
    out = metric.compute()
    assert out["pxpsnr"].item() == pytest.approx(whole.mean(), abs=F32_PSNR_ATOL)
    for i in range(5):
        assert out[f"pxpsnr_f{i + 1}"].item() == pytest.approx(per_frame[:, i].mean(), abs=F32_PSNR_ATOL)


def test_identical_frames() -> None:
    x = _rand((1, 2, 3, 12, 12), seed=4)
    assert torch.isinf(psnr_per_frame(x, x, 1.0)).all()
    torch.testing.assert_close(ssim_per_frame(x, x, 1.0), torch.ones(1, 2))


def test_arguments_are_checked() -> None:
    x = _rand((1, 2, 3, 12, 12), seed=5)
    with pytest.raises(TypeError):
        psnr_per_frame(x, x)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        VideoMetrics(num_frames=2)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        ssim_per_frame(x[..., :10, :], x[..., :10, :], 1.0)  # smaller than the 11-pixel window
    with pytest.raises(ValueError):
        psnr_per_frame(x, x[:, :1], 1.0)
    with pytest.raises(ValueError):
        VideoMetrics(num_frames=3, data_range=1.0).update(x, x)


# ----------------------------------------------------------------------------------------------------
# VideoMetrics
# ----------------------------------------------------------------------------------------------------
def _batch(b: int = 5, t: int = 5, seed: int = 6) -> tuple[Tensor, Tensor]:
    target = _rand((b, t, 3, 14, 13), seed=seed)
    pred = (target + 0.2 * (_rand(target.shape, seed=seed + 1) - 0.5)).clamp(0, 1)
    pred[1] = pred[1].flip(0)
    pred[3] = pred[3].flip(0)
    return pred, target


def test_keys_and_plain_values() -> None:
    pred, target = _batch()
    metric = VideoMetrics(num_frames=5, data_range=1.0)
    metric.update(pred, target)
    out = metric.compute()
    names = ["psnr", "ssim", "ppsnr", "pssim", "pxpsnr"]
    expected_keys = [k for n in names for k in [n, *(f"{n}_f{i}" for i in range(1, 6))]]
    assert list(out) == [*expected_keys, "psnr_center", "reversed_frac"]
    assert all(v.dim() == 0 for v in out.values())
    psnr = _sk_psnr(pred, target, 1.0).mean(0)  # mean over samples of per-sample PSNR
    ssim = _sk_ssim(pred, target, 1.0).mean(0)
    for i in range(5):
        assert out[f"psnr_f{i + 1}"].item() == pytest.approx(psnr[i], abs=1e-4)
        assert out[f"ssim_f{i + 1}"].item() == pytest.approx(ssim[i], abs=1e-5)
    assert out["psnr"].item() == pytest.approx(psnr.mean(), abs=1e-4)
    assert out["ssim"].item() == pytest.approx(ssim.mean(), abs=1e-5)
    assert out["psnr_center"].item() == pytest.approx(psnr[2], abs=1e-4)


def test_center_psnr_of_an_even_number_of_frames() -> None:
    pred, target = _batch(b=4, t=4, seed=13)
    metric = VideoMetrics(num_frames=4, data_range=1.0)
    metric.update(pred, target)
    out = metric.compute()
    expected = (out["psnr_f2"].item() + out["psnr_f3"].item()) / 2
    assert out["psnr_center"].item() == pytest.approx(expected, abs=1e-12)


def test_p_metrics_pick_the_better_direction_per_sample() -> None:
    pred, target = _batch()
    metric = VideoMetrics(num_frames=5, data_range=1.0)
    metric.update(pred, target)
    out = metric.compute()

    fwd_p, rev_p = _sk_psnr(pred, target, 1.0), _sk_psnr(pred.flip(1), target, 1.0)
    fwd_s, rev_s = _sk_ssim(pred, target, 1.0), _sk_ssim(pred.flip(1), target, 1.0)
    use_rev = rev_p.mean(1) > fwd_p.mean(1)
    assert use_rev.tolist() == [False, True, False, True, False]
    best_p = np.where(use_rev[:, None], rev_p, fwd_p).mean(0)
    best_s = np.where(use_rev[:, None], rev_s, fwd_s).mean(0)
    for i in range(5):
        assert out[f"ppsnr_f{i + 1}"].item() == pytest.approx(best_p[i], abs=1e-4)
        assert out[f"pssim_f{i + 1}"].item() == pytest.approx(best_s[i], abs=1e-5)
    assert out["ppsnr"].item() == pytest.approx(best_p.mean(), abs=1e-4)
    assert out["pssim"].item() == pytest.approx(best_s.mean(), abs=1e-5)
    assert out["reversed_frac"].item() == pytest.approx(0.4)
    assert out["ppsnr"] > out["psnr"]
    # The reversed prediction gives the same p-metrics and the opposite choices.
    flipped = VideoMetrics(num_frames=5, data_range=1.0)
    flipped.update(pred.flip(1), target)
    out_f = flipped.compute()
    assert out_f["ppsnr"].item() == pytest.approx(out["ppsnr"].item(), abs=1e-9)
    assert out_f["pssim"].item() == pytest.approx(out["pssim"].item(), abs=1e-9)
    assert out_f["reversed_frac"].item() == pytest.approx(0.6)


def test_batch_size_does_not_matter() -> None:
    pred, target = _batch(b=4, t=3, seed=8)
    whole = VideoMetrics(num_frames=3, data_range=1.0)
    whole.update(pred, target)
    one_by_one = VideoMetrics(num_frames=3, data_range=1.0)
    for i in range(4):
        one_by_one.update(pred[i : i + 1], target[i : i + 1])
    a, b = whole.compute(), one_by_one.compute()
    for key in a:
        assert b[key].item() == pytest.approx(a[key].item(), abs=1e-10), key
    one_by_one.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(one_by_one.compute()["psnr"].item())


def test_ddp_two_ranks_match_one_process() -> None:
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "src"), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(
        [sys.executable, str(root / "tests" / "ddp_image_metrics_worker.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_functional_metrics_do_not_import_torchmetrics() -> None:
    """torchmetrics (and the scipy.signal it imports) loads only with the Metric classes."""
    code = (
        "import sys; from hypercut.metrics import psnr_per_frame, sequence_scores, ssim_per_frame; "
        "assert 'torchmetrics' not in sys.modules, 'torchmetrics imported'; "
        "from hypercut.metrics import VideoMetrics; assert 'torchmetrics' in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

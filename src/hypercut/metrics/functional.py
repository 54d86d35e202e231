"""Per-frame PSNR and SSIM of predicted sequences, and the order-free scores built on them.

Plain torch (and OpenCV's separable filter on the CPU); importing this module does not import
torchmetrics, whose import pulls in scipy.signal and takes seconds. :class:`hypercut.metrics.VideoMetrics`
accumulates :func:`sequence_scores` over batches and ranks.

Conventions (as in the HyperCUT paper and its released evaluation):

- PSNR of a frame is ``10 log10(data_range^2 / mse)``, the MSE taken over its channels and pixels;
  ``inf`` for a perfect frame (as in scikit-image).
- SSIM (Wang et al. 2004) is scikit-image's ``structural_similarity(p, t, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=data_range, channel_axis=0)``: an 11-tap Gaussian
  window, K1 = 0.01, K2 = 0.03, population covariances, the 5-pixel border left out of the mean,
  averaged over channels.
- The "p" scores are invariant to the time direction: per sample, the prediction or its time reversal
  is kept, whichever has the higher mean PSNR over frames (ties keep the prediction); the same choice
  is reused for SSIM.
- The per-pixel best-direction PSNR (Blur2Vid's evaluation, Tedla et al. 2025) chooses the direction
  per pixel instead: for each pixel, whichever of the prediction and its reversal has the smaller
  squared error summed over frames and channels.

Precision: squared errors and SSIM maps are computed in the input's precision, at least float32 (so
float64 inputs are computed in float64), and every sum over pixels is accumulated in float64. In
float32, PSNR agrees with scikit-image's float64 result to about 1e-6 dB and SSIM to about 1e-6 (at
most 9.4e-7 dB and 5.1e-7 on the test images of ``tests/test_image_metrics.py``, flat patches
included; the tests allow 5e-6 and 2e-6); in float64 both agree to about 1e-14 (tests: 1e-12).

Why not torchmetrics' PSNR and SSIM: its SSIM pads the image and averages over the padded border,
which differs from scikit-image (and from the paper's numbers) by about 3e-4, and neither function
shares the squared errors or the filtered moments between the two time directions, the per-pixel
choice and the identity baseline, which is where the time of a full-resolution evaluation goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

__all__ = ["SequenceScores", "psnr_per_frame", "sequence_scores", "ssim_per_frame"]

_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5  # int(3.5 * 1.5 + 0.5): scikit-image's truncate=3.5 gives the classic 11-tap window
_SSIM_WINDOW = 2 * _SSIM_RADIUS + 1
_K1, _K2 = 0.01, 0.03


def _check_sequences(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.dim() != 5:
        raise ValueError(f"expected (B, T, C, H, W) sequences, got shape {tuple(pred.shape)}")


def _check_range(data_range: float) -> float:
    data_range = float(data_range)
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    return data_range


def _check_ssim_size(shape: Sequence[int]) -> None:
    h, w = shape[-2:]
    if h < _SSIM_WINDOW or w < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels, got {h}x{w}")


def _float_dtype(x: Tensor) -> torch.dtype:
    """The dtype scores are computed and returned in: the input's, at least float32."""
    return torch.promote_types(x.dtype, torch.float32)


def _sum64(x: Tensor, dims: int) -> Tensor:
    """Sum over the last ``dims`` dimensions in float64: rows in ``x``'s dtype, the rest in float64.

    Summing each row first avoids a float64 copy of the whole map; a row (at most a few thousand
    values, summed pairwise by torch) loses nothing measurable in float32.
    """
    rows = x.sum(-1)
    return rows.double().sum(tuple(range(-dims + 1, 0))) if dims > 1 else rows.double()


def _psnr(sse: Tensor, count: int, data_range: float) -> Tensor:
    """PSNR in dB from float64 sums of squared errors over ``count`` values each."""
    return 10.0 * torch.log10((data_range**2 * count) / sse)


# ----------------------------------------------------------------------------------------------------
# Squared errors
# ----------------------------------------------------------------------------------------------------
def _repeats_one_frame(x: Tensor) -> bool:
    """Whether ``x (T, ...)`` is one frame broadcast over time (stride 0, as ``expand`` makes it)."""
    return x.shape[0] > 1 and x.stride(0) == 0


@dataclass
class _Errors:
    """Float64 sums of squared errors of one sample, per frame.

    ``forward[t]`` compares predicted frame ``t`` with target frame ``t``, ``reverse[t]`` predicted frame
    ``T - 1 - t`` with target frame ``t``, ``pixel[t]`` takes per pixel whichever of the two directions
    has the smaller error over the whole sequence.
    """

    forward: Tensor
    reverse: Tensor
    pixel: Tensor


def _sample_errors(pred: Tensor, target: Tensor) -> _Errors:
    """Shape: ``pred, target (T, C, H, W)`` of the compute dtype; every field ``(T,)``."""
    t_count = pred.shape[0]
    constant = _repeats_one_frame(pred)  # then the reversal is the prediction itself
    diff = torch.empty_like(target[0])
    fwd = target.new_empty((t_count, *target.shape[-2:]))  # per-pixel error summed over channels
    rev = fwd if constant else torch.empty_like(fwd)
    for t in range(t_count):
        torch.sum(torch.sub(pred[t], target[t], out=diff).square_(), 0, out=fwd[t])
        u = t_count - 1 - t
        if not constant and u != t:
            torch.sum(torch.sub(pred[u], target[t], out=diff).square_(), 0, out=rev[t])
        elif not constant:
            rev[t] = fwd[t]
    forward = _sum64(fwd, 2)
    if constant:
        return _Errors(forward, forward, forward)
    reverse = _sum64(rev, 2)
    use_reverse = rev.sum(0) < fwd.sum(0)  # (H, W); ties keep the prediction's order
    pixel = _sum64(torch.where(use_reverse, rev, fwd, out=fwd), 2)
    return _Errors(forward, reverse, pixel)


# ----------------------------------------------------------------------------------------------------
# SSIM
# ----------------------------------------------------------------------------------------------------
# Frames are processed in chunks of about this many values per map: a few large operations per chunk
# instead of many small ones, with the working memory bounded (a dozen maps of this size).
_CHUNK_VALUES = 1 << 22


def _gaussian_taps() -> npt.NDArray[np.float64]:
    x = np.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / _SSIM_SIGMA) ** 2)
    return g / g.sum()


_TAPS = _gaussian_taps()
_TAPS32: npt.NDArray[np.float32] = _TAPS.astype(np.float32)


def _filter_opencv(planes: Tensor) -> Tensor:
    """Separable Gaussian filter of CPU planes with ``cv2.sepFilter2D``, kept where the window fits."""
    import cv2

    planes = planes.contiguous()
    out = torch.empty_like(planes)
    taps = _TAPS32 if planes.dtype == torch.float32 else _TAPS
    src, dst = planes.numpy(), out.numpy()
    for i in range(planes.shape[0]):
        # The border mode only affects outputs whose window leaves the image; they are cropped below.
        cv2.sepFilter2D(src[i], -1, taps, taps, dst=dst[i], borderType=cv2.BORDER_REFLECT)
    r = _SSIM_RADIUS
    return out[:, r:-r, r:-r]


def _filter_torch(planes: Tensor) -> Tensor:
    """The same filter as a sum of shifted, weighted copies (any device; no TF32 convolution)."""
    n, h, w = planes.shape
    r = _SSIM_RADIUS
    taps = _TAPS.tolist()

    def along(x: Tensor, dim: int, size: int) -> Tensor:
        out = x.narrow(dim, r, size) * taps[r]
        for k in range(r):  # the window is symmetric: taps k and 2r - k are equal
            out.add_(x.narrow(dim, k, size) + x.narrow(dim, 2 * r - k, size), alpha=taps[k])
        return out

    return along(along(planes, 2, w - 2 * r), 1, h - 2 * r)


def _gaussian_filter(x: Tensor) -> Tensor:
    """Gaussian-weighted local means of each plane of ``x`` where the whole window lies inside it.

    Shape: ``(..., H, W) -> (..., H - 10, W - 10)``.
    """
    planes = x.reshape(-1, *x.shape[-2:])
    out = _filter_opencv(planes) if planes.device.type == "cpu" else _filter_torch(planes)
    return out.view(*x.shape[:-2], *out.shape[-2:])


@dataclass
class _Moments:
    """Filtered moments of images: ``mean``; ``mean^2 + c1 / 2``; ``variance + c2 / 2``."""

    mean: Tensor
    mean_sq: Tensor
    var: Tensor

    def select(self, index: Tensor) -> _Moments:
        return _Moments(*(m.index_select(0, index) for m in (self.mean, self.mean_sq, self.var)))


def _moments(x: Tensor, c1: float, c2: float) -> _Moments:
    mean = _gaussian_filter(x)
    mean_sq = mean * mean
    # c2/2 is added after the subtraction: added to x^2 before filtering it costs float32 digits.
    var = _gaussian_filter(x * x).sub_(mean_sq).add_(c2 / 2)
    return _Moments(mean, mean_sq.add_(c1 / 2), var)


def _ssim_from_moments(mx: _Moments, my: _Moments, x: Tensor, y: Tensor, c1: float, c2: float) -> Tensor:
    """Mean SSIM over the channels and valid pixels of each frame; ``(N, C, H, W) -> (N,)`` float64.

    SSIM = (2 mx my + c1)(2 cov + c2) / ((mx^2 + my^2 + c1)(vx + vy + c2))
         = 4 (mx my + c1/2)(cov + c2/2) / ((mx^2 + c1/2 + my^2 + c1/2)(vx + c2/2 + vy + c2/2)).
    A ``x`` (and ``mx``) of one frame is broadcast over the ``N`` frames of ``y``.
    """
    # The window's taps sum to 1: filtering x y + c2/2 gives the filtered product plus c2/2.
    cov = _gaussian_filter(torch.addcmul(y.new_tensor(c2 / 2), x, y)).addcmul_(mx.mean, my.mean, value=-1)
    num = torch.addcmul(y.new_tensor(c1 / 2), mx.mean, my.mean).mul_(cov)
    den = torch.add(mx.mean_sq, my.mean_sq)
    den.mul_(torch.add(mx.var, my.var, out=cov))
    num.div_(den)
    return _sum64(num, 2).mean(-1).mul_(4.0 / (num.shape[-2] * num.shape[-1]))


def _mirrored_chunks(num_frames: int, frame_values: int) -> list[list[int]]:
    """Frame indices in chunks closed under ``t -> T - 1 - t``, about ``_CHUNK_VALUES`` values each."""
    per_chunk = max(2, _CHUNK_VALUES // max(frame_values, 1))
    chunks: list[list[int]] = [[]]
    for t in range((num_frames + 1) // 2):
        group = sorted({t, num_frames - 1 - t})
        if chunks[-1] and len(chunks[-1]) + len(group) > per_chunk:
            chunks.append([])
        chunks[-1] += group
    return chunks


def _sample_ssim(pred: Tensor, target: Tensor, data_range: float, reverse: bool) -> tuple[Tensor, Tensor]:
    """SSIM of each frame, as predicted and (when ``reverse``) of the time-reversed prediction.

    The filtered moments of each frame serve both directions; a prediction broadcast over time (the
    identity baseline) is filtered once. Without ``reverse``, or for a prediction broadcast over time,
    the second output is the first.

    Shape: ``pred, target (T, C, H, W)`` of the compute dtype; outputs ``(T,)`` float64.
    """
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    t_count = pred.shape[0]
    constant = _repeats_one_frame(pred)  # then its reversal is itself
    fwd = torch.empty(t_count, dtype=torch.float64, device=pred.device)
    rev = torch.empty_like(fwd) if reverse and not constant else fwd
    x_constant = pred[:1]
    m_constant = _moments(x_constant, c1, c2) if constant else None
    for frames in _mirrored_chunks(t_count, pred[0].numel()):
        index = torch.tensor(frames, device=pred.device)
        y = target.index_select(0, index)
        my = _moments(y, c1, c2)
        if m_constant is not None:
            fwd[index] = _ssim_from_moments(m_constant, my, x_constant, y, c1, c2)
            continue
        x = pred.index_select(0, index)
        mx = _moments(x, c1, c2)
        fwd[index] = _ssim_from_moments(mx, my, x, y, c1, c2)
        if reverse:
            mirror = torch.tensor([frames.index(t_count - 1 - f) for f in frames], device=pred.device)
            rev[index] = _ssim_from_moments(mx.select(mirror), my, x.index_select(0, mirror), y, c1, c2)
    return fwd, rev


# ----------------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------------
def psnr_per_frame(pred: Tensor, target: Tensor, data_range: float) -> Tensor:
    """PSNR of every frame of every sample: ``10 log10(data_range^2 / mse)``.

    Args:
        pred: Predicted sequences.
        target: Ground-truth sequences.
        data_range: Value range of the images (1 for [0, 1] images). Required.

    Returns:
        Per-sample, per-frame PSNR in dB (``inf`` for identical frames), in the input's floating
        dtype (at least float32).

    Shape:
        - pred, target: ``(B, T, C, H, W)``
        - output: ``(B, T)``

    Example:
        >>> x = torch.zeros(1, 2, 3, 4, 4)
        >>> psnr_per_frame(x, x + 0.1, data_range=1.0)
        tensor([[20., 20.]])
    """
    _check_sequences(pred, target)
    data_range = _check_range(data_range)
    dtype = _float_dtype(pred)
    with torch.no_grad():
        p, y = pred.detach().to(dtype), target.detach().to(dtype)
        sse = (p - y).square_().flatten(2).sum(-1, dtype=torch.float64)
        return _psnr(sse, p[0, 0].numel(), data_range).to(dtype)


def ssim_per_frame(pred: Tensor, target: Tensor, data_range: float) -> Tensor:
    """SSIM of every frame of every sample (Wang et al. 2004), averaged over channels.

    Matches ``skimage.metrics.structural_similarity(p, t, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range, channel_axis=0)`` per frame (see the module
    docstring for the precision).

    Args:
        pred: Predicted sequences.
        target: Ground-truth sequences.
        data_range: Value range of the images (1 for [0, 1] images). Required.

    Returns:
        Per-sample, per-frame SSIM, in the input's floating dtype (at least float32).

    Shape:
        - pred, target: ``(B, T, C, H, W)`` with ``H, W >= 11``
        - output: ``(B, T)``

    Example:
        >>> x = torch.rand(2, 3, 3, 16, 16)
        >>> ssim_per_frame(x, x, data_range=1.0)
        tensor([[1., 1., 1.],
                [1., 1., 1.]])
    """
    _check_sequences(pred, target)
    data_range = _check_range(data_range)
    _check_ssim_size(pred.shape)
    dtype = _float_dtype(pred)
    with torch.no_grad():
        p, y = pred.detach().to(dtype), target.detach().to(dtype)
        out = torch.stack([_sample_ssim(p[i], y[i], data_range, reverse=False)[0] for i in range(p.shape[0])])
    return out.to(dtype)


@dataclass
class SequenceScores:
    """Per-sample scores of a batch of predicted sequences (all float64), from :func:`sequence_scores`.

    Attributes:
        psnr: PSNR of each frame as predicted, ``(B, T)``.
        ssim: SSIM of each frame as predicted, ``(B, T)``.
        reversed: whether the time reversal has the higher mean PSNR, ``(B,)`` bool.
        ppsnr: PSNR of each frame in the better direction, ``(B, T)``.
        pssim: SSIM of each frame in the better direction, ``(B, T)``.
        pixel_psnr: PSNR of each frame with the direction chosen per pixel, ``(B, T)``.
        pixel_psnr_all: PSNR of the whole sequence (MSE over frames, channels and pixels) with the
            direction chosen per pixel, Blur2Vid's per-sample figure, ``(B,)``.
    """

    psnr: Tensor
    ssim: Tensor
    reversed: Tensor
    ppsnr: Tensor
    pssim: Tensor
    pixel_psnr: Tensor
    pixel_psnr_all: Tensor


def sequence_scores(pred: Tensor, target: Tensor, data_range: float) -> SequenceScores:
    """PSNR, SSIM, their order-free variants and the per-pixel best-direction PSNR of each sample.

    Computed in one pass per sample: the squared errors of both directions give the plain, the "p" and
    the per-pixel PSNR; the SSIM of the reversed direction is computed only for the samples where it
    is chosen, from the same filtered moments as the forward one.

    Args:
        pred: Predicted sequences; a prediction broadcast over time (``x.unsqueeze(1).expand(...)``,
            the identity baseline) is filtered once per sample.
        target: Ground-truth sequences.
        data_range: Value range of the images (1 for [0, 1] images). Required.

    Returns:
        The scores, see :class:`SequenceScores`.

    Shape:
        - pred, target: ``(B, T, C, H, W)`` with ``H, W >= 11``

    Example:
        >>> x = torch.rand(1, 4, 3, 16, 16)
        >>> s = sequence_scores(x.flip(1), x, data_range=1.0)
        >>> bool(s.reversed[0]), float(s.pssim[0, 0]), float(s.pixel_psnr_all[0])
        (True, 1.0, inf)
    """
    _check_sequences(pred, target)
    data_range = _check_range(data_range)
    _check_ssim_size(pred.shape)
    b, t_count = pred.shape[:2]
    count = pred[0, 0].numel()
    dtype = _float_dtype(pred)
    fields: dict[str, list[Tensor]] = {name: [] for name in SequenceScores.__dataclass_fields__}
    with torch.no_grad():
        for i in range(b):
            p, y = pred[i].detach().to(dtype), target[i].detach().to(dtype)
            errors = _sample_errors(p, y)
            psnr, psnr_rev = _psnr(errors.forward, count, data_range), _psnr(errors.reverse, count, data_range)
            rev = bool(psnr_rev.mean() > psnr.mean())
            ssim, ssim_rev = _sample_ssim(p, y, data_range, reverse=rev)
            fields["psnr"].append(psnr)
            fields["ssim"].append(ssim)
            fields["reversed"].append(torch.tensor(rev, device=pred.device))
            fields["ppsnr"].append(psnr_rev if rev else psnr)
            fields["pssim"].append(ssim_rev if rev else ssim)
            fields["pixel_psnr"].append(_psnr(errors.pixel, count, data_range))
            fields["pixel_psnr_all"].append(_psnr(errors.pixel.sum(), count * t_count, data_range))
    return SequenceScores(**{name: torch.stack(values) for name, values in fields.items()})

"""Per-frame image quality of predicted sequences: PSNR, SSIM and the order-free "p" variants.

The functional forms return one value per sample and frame; :class:`VideoMetrics` accumulates them
over batches (any batch size) and across DDP ranks.

Conventions (as in the HyperCUT paper and its released evaluation):

- A per-frame value is the **mean over samples of the per-sample PSNR / SSIM** of that frame (not the
  PSNR of the pooled MSE). The overall ``psnr`` is the mean of the per-frame values.
- The ``p`` variants are invariant to the time direction: per sample, the prediction or its time
  reversal is kept, whichever has the higher mean PSNR over frames (ties keep the prediction), and the
  same choice is reused for SSIM.
- PSNR of a perfect frame is ``inf`` (as in scikit-image); it propagates into the means.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

__all__ = ["VideoMetrics", "psnr_per_frame", "ssim_per_frame"]

_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5  # int(3.5 * 1.5 + 0.5): scikit-image's truncate=3.5 gives the classic 11-tap window
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


def _out_dtype(x: Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def psnr_per_frame(pred: Tensor, target: Tensor, data_range: float) -> Tensor:
    """PSNR of every frame of every sample: ``10 log10(data_range^2 / mse)``.

    The MSE of a frame is taken over its channels and pixels, in float64.

    Args:
        pred: Predicted sequences.
        target: Ground-truth sequences.
        data_range: Value range of the images (1 for [0, 1] images). Required.

    Returns:
        Per-sample, per-frame PSNR in dB (``inf`` for identical frames).

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
    diff = pred.double() - target.double()
    mse = diff.square().flatten(2).mean(-1)
    psnr = 10.0 * torch.log10(data_range**2 / mse)
    return psnr.to(_out_dtype(pred))


def _gaussian_kernel(device: torch.device) -> Tensor:
    x = torch.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (x / _SSIM_SIGMA) ** 2)
    return g / g.sum()


def _ssim_planes(x: Tensor, y: Tensor, data_range: float) -> Tensor:
    """Mean SSIM of each plane of ``(N, H, W)`` float64 images, borders cropped as scikit-image does."""
    n = x.shape[0]
    g = _gaussian_kernel(x.device)
    win = g.numel()
    # Five maps per plane, filtered in one grouped separable convolution.
    maps = torch.stack([x, y, x * x, y * y, x * y], dim=1)  # (N, 5, H, W)
    # 'valid' filtering == scikit-image's reflect-padded filter followed by its crop of (win - 1) / 2
    # pixels on every side: the kept outputs never touch the padding.
    maps = F.conv2d(maps, g.view(1, 1, 1, win).expand(5, 1, 1, win), groups=5)
    maps = F.conv2d(maps, g.view(1, 1, win, 1).expand(5, 1, win, 1), groups=5)
    ux, uy, uxx, uyy, uxy = maps.unbind(1)
    vx = uxx - ux * ux  # population covariance (use_sample_covariance=False)
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.reshape(n, -1).mean(-1)


def ssim_per_frame(pred: Tensor, target: Tensor, data_range: float) -> Tensor:
    """SSIM of every frame of every sample (Wang et al. 2004), averaged over channels.

    Gaussian window of 11 taps, sigma 1.5, K1 = 0.01, K2 = 0.03, population covariances, the 5-pixel
    border left out of the average; computed in float64. Matches
    ``skimage.metrics.structural_similarity(p, t, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range, channel_axis=0)`` per frame.

    Args:
        pred: Predicted sequences.
        target: Ground-truth sequences.
        data_range: Value range of the images (1 for [0, 1] images). Required.

    Returns:
        Per-sample, per-frame SSIM.

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
    b, t, c, h, w = pred.shape
    win = 2 * _SSIM_RADIUS + 1
    if h < win or w < win:
        raise ValueError(f"SSIM needs frames of at least {win}x{win} pixels, got {h}x{w}")
    out = torch.empty(b, t, dtype=torch.float64, device=pred.device)
    # One frame index at a time bounds the float64 working memory at full resolution.
    for i in range(t):
        x = pred[:, i].reshape(b * c, h, w).double()
        y = target[:, i].reshape(b * c, h, w).double()
        out[:, i] = _ssim_planes(x, y, data_range).view(b, c).mean(-1)
    return out.to(_out_dtype(pred))


class VideoMetrics(Metric):
    """Per-frame PSNR and SSIM of predicted sequences, in the stored order and order-free ("p").

    ``compute()`` returns a flat dict of scalar tensors (``T = num_frames``)::

        psnr, psnr_f1 .. psnr_fT, ssim, ssim_f1 .. ssim_fT          # prediction as is
        ppsnr, ppsnr_f1 .. ppsnr_fT, pssim, pssim_f1 .. pssim_fT    # better direction per sample
        reversed_frac                                                # share of samples reversed

    A per-frame value is the mean over samples of the per-sample value of that frame; the overall value
    is the mean of the per-frame values. The direction of the ``p`` variants is chosen per sample on the
    mean PSNR over frames (ties keep the prediction) and reused for SSIM.

    States are per-frame sums of the per-sample values and a sample count, summed across DDP ranks, so
    the result does not depend on the batch size or on how samples are split between ranks.

    Args:
        num_frames: ``T``, the number of frames of every sequence.
        data_range: Value range of the images (1 for [0, 1] images). Required.
        **kwargs: Passed to :class:`torchmetrics.Metric`.

    Shape:
        - update(pred, target): ``(B, T, C, H, W)`` each, ``H, W >= 11``.

    Example:
        >>> m = VideoMetrics(num_frames=3, data_range=1.0)
        >>> x = torch.rand(2, 3, 3, 16, 16)
        >>> m.update(x.flip(1).clamp(0, 0.9), x)
        >>> out = m.compute()
        >>> float(out["reversed_frac"]), bool(out["ppsnr"] > out["psnr"])
        (1.0, True)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    psnr_sum: Tensor
    ssim_sum: Tensor
    ppsnr_sum: Tensor
    pssim_sum: Tensor
    reversed_count: Tensor
    count: Tensor

    def __init__(self, num_frames: int, data_range: float, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames = int(num_frames)
        self.data_range = _check_range(data_range)
        for name in ("psnr_sum", "ssim_sum", "ppsnr_sum", "pssim_sum"):
            self.add_state(
                name, default=torch.zeros(self.num_frames, dtype=torch.float64), dist_reduce_fx="sum"
            )
        self.add_state("reversed_count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch of predictions and ground truths, both ``(B, T, C, H, W)``."""
        _check_sequences(pred, target)
        if pred.shape[1] != self.num_frames:
            raise ValueError(f"expected {self.num_frames} frames, got {pred.shape[1]}")
        pred, target = pred.detach(), target.detach()
        psnr = psnr_per_frame(pred, target, self.data_range).double()
        ssim = ssim_per_frame(pred, target, self.data_range).double()
        psnr_rev = psnr_per_frame(pred.flip(1), target, self.data_range).double()
        rev = psnr_rev.mean(1) > psnr.mean(1)  # (B,)
        ppsnr = torch.where(rev[:, None], psnr_rev, psnr)
        pssim = ssim.clone()
        if bool(rev.any()):
            # SSIM of the reversed direction only where it was chosen.
            pssim[rev] = ssim_per_frame(pred[rev].flip(1), target[rev], self.data_range).double()
        # Out of place: states reset under torch.inference_mode (Trainer.validate) stay updatable.
        self.psnr_sum = self.psnr_sum + psnr.sum(0)
        self.ssim_sum = self.ssim_sum + ssim.sum(0)
        self.ppsnr_sum = self.ppsnr_sum + ppsnr.sum(0)
        self.pssim_sum = self.pssim_sum + pssim.sum(0)
        self.reversed_count = self.reversed_count + rev.sum()
        self.count = self.count + pred.shape[0]

    def compute(self) -> dict[str, Tensor]:
        """Return the dict of scalar metrics described in the class docstring."""
        if float(self.count) == 0:
            nan = torch.tensor(math.nan, dtype=torch.float64, device=self.count.device)
            out: dict[str, Tensor] = {}
            for name in ("psnr", "ssim", "ppsnr", "pssim"):
                out[name] = nan
                out.update({f"{name}_f{i + 1}": nan for i in range(self.num_frames)})
            out["reversed_frac"] = nan
            return out
        out = {}
        for name, total in (
            ("psnr", self.psnr_sum),
            ("ssim", self.ssim_sum),
            ("ppsnr", self.ppsnr_sum),
            ("pssim", self.pssim_sum),
        ):
            per_frame = total / self.count
            out[name] = per_frame.mean()
            out.update({f"{name}_f{i + 1}": per_frame[i] for i in range(self.num_frames)})
        out["reversed_frac"] = self.reversed_count / self.count
        return out

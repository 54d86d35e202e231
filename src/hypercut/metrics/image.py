"""``VideoMetrics``: per-frame PSNR and SSIM of predicted sequences, in the stored order and order-free.

The per-sample scores come from :func:`hypercut.metrics.functional.sequence_scores` (conventions,
precision and the agreement with scikit-image are described there); this module accumulates them over
batches (any batch size) and across DDP ranks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

from hypercut.metrics.functional import (
    _check_range,
    _check_sequences,
    psnr_per_frame,
    sequence_scores,
    ssim_per_frame,
)

__all__ = ["VideoMetrics", "psnr_per_frame", "ssim_per_frame"]

_PER_FRAME = ("psnr", "ssim", "ppsnr", "pssim", "pxpsnr")


class VideoMetrics(Metric):
    """Per-frame PSNR and SSIM of predicted sequences, as predicted and in the better time direction.

    ``compute()`` returns a flat dict of scalar tensors (``T = num_frames``)::

        psnr, psnr_f1 .. psnr_fT, ssim, ssim_f1 .. ssim_fT          # prediction as is
        ppsnr, ppsnr_f1 .. ppsnr_fT, pssim, pssim_f1 .. pssim_fT    # better direction per sample
        pxpsnr, pxpsnr_f1 .. pxpsnr_fT                               # better direction per pixel
        psnr_center                                                  # the middle frame's PSNR
        reversed_frac                                                # share of samples reversed

    A per-frame value is the mean over samples of the per-sample value of that frame (not the PSNR of
    the pooled MSE); ``psnr``, ``ssim``, ``ppsnr`` and ``pssim`` are the means of their per-frame values.
    The direction of ``ppsnr``/``pssim`` is chosen per sample on the mean PSNR over frames (ties keep
    the prediction) and reused for SSIM.

    ``pxpsnr`` is Blur2Vid's per-pixel best-direction PSNR: per pixel, the direction (prediction or
    its reversal) with the smaller squared error summed over frames and channels; per sample, the PSNR
    of the mean of those errors over frames, channels and pixels; then the mean over samples.
    ``pxpsnr_fT`` is the PSNR of frame T under the same per-pixel choice, so ``pxpsnr`` is not the mean
    of the ``pxpsnr_f`` values. ``psnr_center`` is ``psnr`` of the middle frame (the mean of the two
    middle frames for an even ``T``); it does not depend on the direction.

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
    pxpsnr_sum: Tensor
    pxpsnr_all_sum: Tensor
    reversed_count: Tensor
    count: Tensor

    def __init__(self, num_frames: int, data_range: float, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames = int(num_frames)
        self.data_range = _check_range(data_range)
        for name in _PER_FRAME:
            self.add_state(
                f"{name}_sum", default=torch.zeros(self.num_frames, dtype=torch.float64), dist_reduce_fx="sum"
            )
        for name in ("pxpsnr_all_sum", "reversed_count", "count"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch of predictions and ground truths, both ``(B, T, C, H, W)``."""
        _check_sequences(pred, target)
        if pred.shape[1] != self.num_frames:
            raise ValueError(f"expected {self.num_frames} frames, got {pred.shape[1]}")
        s = sequence_scores(pred, target, self.data_range)
        # Out of place: states reset under torch.inference_mode (Trainer.validate) stay updatable.
        self.psnr_sum = self.psnr_sum + s.psnr.sum(0)
        self.ssim_sum = self.ssim_sum + s.ssim.sum(0)
        self.ppsnr_sum = self.ppsnr_sum + s.ppsnr.sum(0)
        self.pssim_sum = self.pssim_sum + s.pssim.sum(0)
        self.pxpsnr_sum = self.pxpsnr_sum + s.pixel_psnr.sum(0)
        self.pxpsnr_all_sum = self.pxpsnr_all_sum + s.pixel_psnr_all.sum()
        self.reversed_count = self.reversed_count + s.reversed.sum()
        self.count = self.count + pred.shape[0]

    def compute(self) -> dict[str, Tensor]:
        """Return the dict of scalar metrics described in the class docstring."""
        t = self.num_frames
        middle = slice((t - 1) // 2, t // 2 + 1)
        if float(self.count) == 0:
            nan = torch.tensor(math.nan, dtype=torch.float64, device=self.count.device)
            per_frame = {name: nan.expand(t) for name in _PER_FRAME}
            overall = {name: nan for name in _PER_FRAME}
            reversed_frac = nan
        else:
            per_frame = {name: getattr(self, f"{name}_sum") / self.count for name in _PER_FRAME}
            overall = {name: values.mean() for name, values in per_frame.items()}
            overall["pxpsnr"] = self.pxpsnr_all_sum / self.count
            reversed_frac = self.reversed_count / self.count
        out: dict[str, Tensor] = {}
        for name in _PER_FRAME:
            out[name] = overall[name]
            out.update({f"{name}_f{i + 1}": per_frame[name][i] for i in range(t)})
        out["psnr_center"] = per_frame["psnr"][middle].mean()
        out["reversed_frac"] = reversed_frac
        return out

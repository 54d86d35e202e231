"""Per-frame PSNR against the ground truth in the ordering model's canonical order, and the order the
predictions follow, as a torchmetrics ``Metric`` (DDP-correct).

A HyperCUT-trained network is meant to predict every sequence in the canonical order of the frozen
ordering model; these measures say whether it does: the plain PSNR against the canonicalised ground
truth (no direction chosen per sample, unlike pPSNR), and per sample whether the prediction follows
the canonical order, the reversed one, or neither clearly (a time-symmetric prediction, e.g. the same
frame repeated, is as close to both).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

from hypercut.metrics.functional import _check_range, _check_sequences, psnr_per_frame

__all__ = ["CanonicalOrderMetrics"]


class CanonicalOrderMetrics(Metric):
    """PSNR per frame against the canonical ground truth, and the share of predictions in each order.

    Per sample, ``fwd`` is the mean PSNR over frames of the prediction against the canonical ground
    truth and ``rev`` that of the prediction reversed in time; the sample

    - follows the canonical order when ``fwd > rev + tie_db``,
    - is reversed when ``rev > fwd + tie_db``,
    - is time-symmetric otherwise (both directions within ``tie_db`` dB).

    ``compute()`` returns (``T = num_frames``)::

        canon_psnr, canon_psnr_f1 .. canon_psnr_fT      # mean over samples of the per-frame PSNR
        order_follows, order_reversed, order_symmetric  # shares of samples, summing to 1

    Every state is a sum over samples (``dist_reduce_fx="sum"``), so the result depends neither on the
    batch size nor on how samples are split between DDP ranks. Without samples every value is NaN.

    Args:
        num_frames: ``T``.
        data_range: Value range of the images (1 for [0, 1] images).
        tie_db: Margin of mean PSNR under which the two directions count as a tie.
        **kwargs: Passed to :class:`torchmetrics.Metric`.

    Shape:
        - update(pred, canonical): ``(B, T, C, H, W)`` each.

    Example:
        >>> m = CanonicalOrderMetrics(num_frames=3, data_range=1.0)
        >>> x = torch.rand(4, 3, 3, 8, 8)
        >>> m.update(torch.cat([x[:2], x[2:].flip(1)]).clamp(0, 0.95), x)
        >>> out = m.compute()
        >>> float(out["order_follows"]), float(out["order_reversed"]), float(out["order_symmetric"])
        (0.5, 0.5, 0.0)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    psnr_sum: Tensor
    follows: Tensor
    reversed: Tensor
    count: Tensor

    def __init__(self, num_frames: int, data_range: float = 1.0, tie_db: float = 0.05, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {num_frames}")
        if tie_db < 0:
            raise ValueError(f"tie_db must be >= 0, got {tie_db}")
        self.num_frames = int(num_frames)
        self.data_range = _check_range(data_range)
        self.tie_db = float(tie_db)
        self.add_state("psnr_sum", torch.zeros(self.num_frames, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("follows", "reversed", "count"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, canonical: Tensor) -> None:
        """Add a batch of predictions and the ground truth in its canonical order."""
        _check_sequences(pred, canonical)
        if pred.shape[1] != self.num_frames:
            raise ValueError(f"expected {self.num_frames} frames, got {pred.shape[1]}")
        fwd = psnr_per_frame(pred, canonical, self.data_range).double()  # (B, T)
        rev = psnr_per_frame(pred.flip(1), canonical, self.data_range).double().mean(1)
        mean = fwd.mean(1)
        # Out of place: states reset under torch.inference_mode (Trainer.validate) stay updatable.
        self.psnr_sum = self.psnr_sum + fwd.sum(0)
        self.follows = self.follows + (mean > rev + self.tie_db).sum()
        self.reversed = self.reversed + (rev > mean + self.tie_db).sum()
        self.count = self.count + pred.shape[0]

    def compute(self) -> dict[str, Tensor]:
        """Return the dict of scalar metrics described in the class docstring."""
        n = self.count
        if float(n) == 0:
            n = torch.tensor(math.nan, dtype=torch.float64, device=self.count.device)
        per_frame = self.psnr_sum / n
        out = {"canon_psnr": per_frame.mean()}
        out.update({f"canon_psnr_f{i + 1}": per_frame[i] for i in range(self.num_frames)})
        out["order_follows"] = self.follows / n
        out["order_reversed"] = self.reversed / n
        out["order_symmetric"] = (n - self.follows - self.reversed) / n
        return {key: value.float() for key, value in out.items()}

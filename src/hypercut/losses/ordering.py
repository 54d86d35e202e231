"""Losses that train the HyperCUT ordering model from pair scores u (forward) and v (reverse).

Function + module pairs; torch only. ``u`` and ``v`` are ``(B, K)`` as returned by
:func:`hypercut.ordering.pair_scores` (column 0 = the outermost pair).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "HyperCUTOrderingLoss",
    "MarginOrderingLoss",
    "hypercut_ordering_loss",
    "margin_ordering_loss",
]


def _check(u: Tensor, v: Tensor) -> None:
    if u.ndim != 2 or u.shape != v.shape:
        raise ValueError(f"u and v must both be (B, K), got {tuple(u.shape)} and {tuple(v.shape)}")


def hypercut_ordering_loss(u: Tensor, v: Tensor) -> Tensor:
    """The HyperCUT ordering loss (paper and released code), generalised to K pairs.

    ``L = 0.5 * L_diff + 0.5 * L_same`` with

    - ``L_diff = mean_{b, k} softplus(u_bk * v_bk)``: a pair and its reverse on opposite sides;
    - ``L_same = mean_{b, j<k} softplus(-u_bj * u_bk)``: all forward pairs of a sequence on one side,
      averaged over the K (K - 1) / 2 pairs of pairs.

    For K = 1 there is no pair of pairs: ``L_same`` is defined as 0 (an empty sum), so ``L = 0.5 *
    L_diff`` -- the same weights as for any K.

    Note: with independent u and v (the released formulation) this loss has a saddle at u = v = 0
    (L = log 2) into which training tends to collapse; use antisymmetric scores (v = -u).

    Args:
        u: Forward pair scores.
        v: Reverse pair scores.

    Returns:
        Scalar loss.

    Shape:
        - u, v: ``(B, K)``.
    """
    _check(u, v)
    l_diff = F.softplus(u * v).mean()
    k = u.shape[1]
    if k < 2:
        l_same = u.new_zeros(())
    else:
        j_idx, k_idx = torch.triu_indices(k, k, offset=1, device=u.device)
        l_same = F.softplus(-u[:, j_idx] * u[:, k_idx]).mean()
    return 0.5 * l_diff + 0.5 * l_same


def margin_ordering_loss(u: Tensor, v: Tensor, margin: float = 1.0) -> Tensor:
    """Margin (contrastive) ordering loss: a sequence on one side, its reverse on the other.

    For each sequence the side ``o`` in ``{+1, -1}`` that costs less is chosen, and every forward
    score is pushed to at least ``m / 2`` on side ``o`` and every reverse score to at least ``m / 2``
    on the other side::

        L = mean_b min_{o = +-1} 0.5 * mean_k [ relu(m/2 - o * u_bk) + relu(m/2 + o * v_bk) ]

    ``L = 0`` exactly when, for every sequence, each pair and its reverse lie on opposite sides of the
    hyperplane and at least ``m`` apart (``|u_k - v_k| >= m``, each at least ``m/2`` from the boundary),
    and all forward pairs of the sequence lie on the same side. Unlike the softplus loss it has no
    saddle at u = v = 0 (the gradient there is non-zero). Any K >= 1.

    Args:
        u: Forward pair scores.
        v: Reverse pair scores.
        margin: m > 0.

    Returns:
        Scalar loss.

    Shape:
        - u, v: ``(B, K)``.
    """
    _check(u, v)
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}")
    half = 0.5 * margin
    pos = 0.5 * (F.relu(half - u) + F.relu(half + v)).mean(dim=1)  # side o = +1
    neg = 0.5 * (F.relu(half + u) + F.relu(half - v)).mean(dim=1)  # side o = -1
    return torch.minimum(pos, neg).mean()


class HyperCUTOrderingLoss(nn.Module):
    """Module form of :func:`hypercut_ordering_loss`.

    Shape:
        - u, v: ``(B, K)``.
        - Output: scalar.
    """

    def forward(self, u: Tensor, v: Tensor) -> Tensor:
        return hypercut_ordering_loss(u, v)


class MarginOrderingLoss(nn.Module):
    """Module form of :func:`margin_ordering_loss`.

    Args:
        margin: m > 0, the separation between a pair's and its reverse's scores.

    Shape:
        - u, v: ``(B, K)``.
        - Output: scalar.
    """

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        if margin <= 0:
            raise ValueError(f"margin must be positive, got {margin}")
        self.margin = float(margin)

    def forward(self, u: Tensor, v: Tensor) -> Tensor:
        return margin_ordering_loss(u, v, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"

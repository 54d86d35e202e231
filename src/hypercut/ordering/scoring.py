"""Pair scores u, v of a sequence and the OrderingModel that produces them (HyperCUT, Pham et al. 2023)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["OrderingModel", "pair_indices", "pair_scores"]


def pair_indices(num_frames: int) -> tuple[list[int], list[int]]:
    """The symmetric frame pairs of a sequence, 0-based.

    Pair ``k`` (k = 0..K-1, K = ``num_frames // 2``) is ``(x_{1+k}, x_{T-k})`` in the 1-based notation
    of the paper, i.e. indices ``(k, T-1-k)``. The middle frame of an odd T is unused.

    Args:
        num_frames: T, at least 2.

    Returns:
        ``(first, last)``: two lists of K indices; pair 0 is the outermost pair.

    Example:
        >>> pair_indices(7)
        ([0, 1, 2], [6, 5, 4])
    """
    if num_frames < 2:
        raise ValueError(f"need at least 2 frames to form a pair, got num_frames={num_frames}")
    k = num_frames // 2
    return list(range(k)), [num_frames - 1 - i for i in range(k)]


def pair_scores(
    encoder: nn.Module, hyperplane: nn.Module, sharp: Tensor, antisymmetric: bool = False
) -> tuple[Tensor, Tensor]:
    """Scores of the forward pairs (u) and of the reversed pairs (v) of every sequence.

    ``u_k = h(H(x_{1+k}, x_{T-k}))`` and ``v_k = h(H(x_{T-k}, x_{1+k}))``. All 2K pair
    encodings of the batch go through ``encoder`` in ONE call (a batch of ``2 * B * K`` pairs).

    With ``antisymmetric=True`` the score of a pair is ``s(a, b) = h(H(a, b)) - h(H(b, a))``, so
    ``u = s(fwd)`` and ``v = -u`` exactly (still one encoder call). A pair and its reverse are then
    always on opposite sides (Hit = 1 by construction), and the loss cannot collapse to the
    ``u = v = 0`` saddle of the released formulation (``antisymmetric=False``).

    Args:
        encoder: Maps ``(N, 2C, H, W)`` pairs to ``(N, D)`` encodings (e.g. :class:`PairEncoder`).
        hyperplane: Maps ``(N, D)`` to ``(N,)`` scores (e.g. :class:`Hyperplane`).
        sharp: The sequences.
        antisymmetric: Use the antisymmetric score.

    Returns:
        ``(u, v)``, the forward and reverse scores.

    Shape:
        - sharp: ``(B, T, C, H, W)``.
        - u, v: ``(B, K)`` with ``K = T // 2``; column 0 is the outermost pair.
    """
    if sharp.ndim != 5:
        raise ValueError(f"sharp must be (B, T, C, H, W), got shape {tuple(sharp.shape)}")
    b, t, c, h, w = sharp.shape
    first, last = pair_indices(t)
    k = len(first)
    a = sharp[:, first]  # (B, K, C, H, W)
    z = sharp[:, last]
    pairs = torch.stack((torch.cat((a, z), dim=2), torch.cat((z, a), dim=2)))  # (2, B, K, 2C, H, W)
    scores = hyperplane(encoder(pairs.reshape(2 * b * k, 2 * c, h, w))).reshape(2, b, k)
    u, v = scores[0], scores[1]
    if antisymmetric:
        u = u - v
        v = -u
    return u, v


class OrderingModel(nn.Module):
    """Encoder + hyperplane: scores the symmetric pairs of a sequence.

    Args:
        encoder: The pair encoder H (e.g. :class:`PairEncoder`).
        hyperplane: The hyperplane h (e.g. :class:`Hyperplane`).
        antisymmetric: Score ``s(a, b) = h(H(a, b)) - h(H(b, a))`` so that ``v = -u`` (default;
            trains reliably). ``False`` gives the released formulation with independent u and v
            (needed for the authors' checkpoints; it tends to collapse to u = v = 0 in training).

    Shape:
        - Input: ``(B, T, C, H, W)``.
        - Output: ``(u, v)``, each ``(B, T // 2)``.

    Example:
        >>> from hypercut.ordering import Hyperplane, PairEncoder
        >>> encoder = PairEncoder(width=8, dims=(16, 16), num_res_blocks=1, out_dim=None)
        >>> model = OrderingModel(encoder, Hyperplane(encoder.out_dim))
        >>> u, v = model(torch.rand(2, 7, 3, 16, 16))
        >>> u.shape, bool((u == -v).all())
        (torch.Size([2, 3]), True)
    """

    def __init__(self, encoder: nn.Module, hyperplane: nn.Module, antisymmetric: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.hyperplane = hyperplane
        self.antisymmetric = bool(antisymmetric)

    def forward(self, sharp: Tensor) -> tuple[Tensor, Tensor]:
        return pair_scores(self.encoder, self.hyperplane, sharp, antisymmetric=self.antisymmetric)

    def extra_repr(self) -> str:
        return f"antisymmetric={self.antisymmetric}"

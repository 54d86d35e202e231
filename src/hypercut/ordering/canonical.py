"""Canonical order of a sequence from a frozen ordering model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hypercut.ordering.scoring import OrderingModel

__all__ = ["LABEL_RULES", "OrderCanonicalizer", "flip_mask", "flip_sequences"]

LABEL_RULES = ("outer", "vote", "unanimous")


def flip_mask(u: Tensor, rule: str = "outer") -> Tensor:
    """Which sequences to reverse so that they lie on the positive (canonical) side.

    Rules (``u`` are the forward pair scores, column 0 the outermost pair):

    - ``"outer"``: reverse when ``u_0 < 0``.
    - ``"vote"``: reverse when ``sum_k sign(u_k) < 0``; a tie (possible for even K) is broken by the
      outer pair (reverse when ``u_0 < 0``), so that a sequence and its reverse get the same
      canonical order whenever the scoring is antisymmetric.
    - ``"unanimous"``: the released rule: reverse only when every ``u_k < 0``, else keep. A sequence
      whose pairs disagree is kept in both directions, so it has no single canonical order.

    A score of exactly 0 counts as positive (keep).

    Args:
        u: Forward pair scores.
        rule: ``"outer"``, ``"vote"`` or ``"unanimous"``.

    Returns:
        ``(B,)`` bool tensor, True where the sequence is to be reversed.

    Shape:
        - u: ``(B, K)``.
    """
    if u.ndim != 2:
        raise ValueError(f"u must be (B, K), got shape {tuple(u.shape)}")
    outer = u[:, 0] < 0
    if rule == "outer":
        return outer
    if rule == "vote":
        votes = torch.sign(u).sum(dim=1)
        return torch.where(votes == 0, outer, votes < 0)
    if rule == "unanimous":
        return (u < 0).all(dim=1)
    raise ValueError(f"unknown rule {rule!r}; expected one of {LABEL_RULES}")


def flip_sequences(sequences: Tensor, flipped: Tensor) -> Tensor:
    """Reverses along T the sequences where ``flipped`` is True (differentiable in ``sequences``).

    Shape:
        - sequences: ``(B, T, ...)``.
        - flipped: ``(B,)`` bool.
        - Output: same as ``sequences``.
    """
    mask = flipped.to(device=sequences.device, dtype=torch.bool)
    mask = mask.view(-1, *([1] * (sequences.ndim - 1)))
    return torch.where(mask, sequences.flip(1), sequences)


class OrderCanonicalizer(nn.Module):
    """A frozen ordering model that puts sequences in their canonical order.

    The canonical order is the positive side of the hyperplane, decided by ``rule`` (see
    :func:`flip_mask`). The canonicalizer takes the given model over: it sets ``requires_grad=False``
    on all its parameters and stays in eval mode (``train()`` is a no-op), so it can sit inside a
    deblurring LightningModule whose optimizer never changes it.

    With antisymmetric scoring the reverse of a sequence has exactly the negated scores, so a
    sequence and its reverse get the same canonical sequence (``"outer"``/``"vote"``; ``"unanimous"``
    only for sequences whose pairs agree), and canonicalising is idempotent.

    Args:
        model: A trained :class:`OrderingModel`.
        rule: Label rule, ``"outer"`` (default), ``"vote"`` or ``"unanimous"`` (released).

    It implements :class:`hypercut.losses.Canonicalizer`: :meth:`canonicalize` for the ground truth,
    :meth:`scores` for predictions.

    Shape:
        - Input: ``(B, T, C, H, W)``.
        - Output: ``(canonical, flipped, u)``: ``(B, T, C, H, W)``, ``(B,)`` bool and ``(B, T // 2)``.
    """

    def __init__(self, model: OrderingModel, rule: str = "outer") -> None:
        super().__init__()
        if rule not in LABEL_RULES:
            raise ValueError(f"unknown rule {rule!r}; expected one of {LABEL_RULES}")
        self.model = model
        self.rule = rule
        self.model.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> OrderCanonicalizer:
        """Always stays in eval mode (the ordering model is frozen); ``mode`` is ignored."""
        return super().train(False)

    def scores(self, pred: Tensor) -> tuple[Tensor, Tensor]:
        """Pair scores ``(u, v)`` of ``pred``, differentiable in ``pred`` (never in the weights).

        Shape:
            - pred: ``(B, T, C, H, W)``.
            - u, v: ``(B, T // 2)``.
        """
        u, v = self.model(pred)
        return u, v

    def canonicalize(self, sharp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(canonical, flipped, u)``: ``sharp`` in its canonical order, which samples were reversed,
        and the pair scores of ``canonical``, from one forward pass of the model (no gradients).

        Reversing a sequence swaps the two frames of every pair, so the scores of a reversed sample
        are its reverse scores ``v``: nothing is scored twice.

        Shape:
            - sharp: ``(B, T, C, H, W)``.
            - canonical: ``(B, T, C, H, W)``; flipped: ``(B,)`` bool; u: ``(B, T // 2)``.
        """
        with torch.no_grad():
            u, v = self.model(sharp)
            flipped = flip_mask(u, self.rule)
            return flip_sequences(sharp, flipped), flipped, torch.where(flipped[:, None], v, u)

    def label(self, sharp: Tensor) -> Tensor:
        """The ``(B,)`` bool flip mask of ``sharp`` (True: reverse it to get the canonical order)."""
        return self.canonicalize(sharp)[1]

    def forward(self, sharp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Same as :meth:`canonicalize`."""
        return self.canonicalize(sharp)

    def extra_repr(self) -> str:
        return f"rule={self.rule!r}"

"""The HyperCUT hyperplane: a normal vector n, scoring h(d) = n . d."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Hyperplane"]


class Hyperplane(nn.Module):
    """A hyperplane through the origin of R^D; ``h(d) = n . d`` tells the side of ``d``.

    The normal ``n`` has entries drawn from U[-1, 1] by a ``torch.Generator`` seeded with ``seed``
    (so the same seed always gives the same plane, independent of the global RNG). It is a buffer
    (fixed, moves with ``.to()``, saved in ``state_dict`` as ``normal``), or a ``Parameter`` of the
    same name when ``learnable=True`` (an option; the paper keeps it fixed).

    Args:
        dim: Dimension D of the encodings.
        seed: Seed of the generator that draws ``n``.
        learnable: Train ``n`` with the encoder instead of keeping it fixed.

    Shape:
        - Input: ``(N, D)``.
        - Output: ``(N,)``.

    Example:
        >>> hp = Hyperplane(4, seed=0)
        >>> hp(torch.ones(2, 4)).shape
        torch.Size([2])
    """

    normal: Tensor

    def __init__(self, dim: int = 128, seed: int = 0, learnable: bool = False) -> None:
        super().__init__()
        self.dim = int(dim)
        self.seed = int(seed)
        self.learnable = bool(learnable)
        gen = torch.Generator().manual_seed(self.seed)
        normal = torch.rand(self.dim, generator=gen, dtype=torch.float32) * 2.0 - 1.0
        if learnable:
            self.normal = nn.Parameter(normal)
        else:
            self.register_buffer("normal", normal)

    def forward(self, d: Tensor) -> Tensor:
        if d.ndim != 2 or d.shape[1] != self.dim:
            raise ValueError(f"Hyperplane expects (N, {self.dim}) encodings, got {tuple(d.shape)}")
        return d @ self.normal.to(d.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, seed={self.seed}, learnable={self.learnable}"

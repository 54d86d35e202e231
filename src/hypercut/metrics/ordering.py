"""Hit and Con@k of the HyperCUT ordering model, as a torchmetrics ``Metric`` (DDP-correct)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["OrderingMetrics", "ordering_metric_keys"]


def ordering_metric_keys(num_pairs: int) -> list[str]:
    """The keys :meth:`OrderingMetrics.compute` returns for ``num_pairs`` pairs, in order."""
    keys = ["hit"] + [f"hit_k{k}" for k in range(1, num_pairs + 1)]
    keys += [f"con{k}" for k in range(2, num_pairs + 1)]
    return keys + ["score_abs", "score_uv"]


class OrderingMetrics(Metric):
    """Hit, per-pair Hit and Con@k of pair scores, aggregated over sequences (the HyperCUT paper's measures).

    Every state is a sum (``dist_reduce_fx="sum"``), so the result does not depend on the batch
    size nor on how sequences are spread over DDP ranks. :meth:`compute` returns a dict:

    - ``"hit"``: fraction of sequences with ``u_0 * v_0 < 0`` (outermost pair and its reverse on
      opposite sides).
    - ``"hit_k1"`` .. ``"hit_kK"``: the same for pair k (1-based; ``hit_k1 == hit``).
    - ``"con2"`` .. ``"conK"``: Con@k, fraction of sequences whose first k forward scores
      ``u_0 .. u_{k-1}`` all have the same sign (``torch.sign``; an exact 0 is its own sign). A NaN
      score has no side: a sequence with one among its first k scores is not consistent at k.
    - ``"score_abs"``: mean ``|u|`` over sequences and pairs (near 0 means the scores collapsed).
    - ``"score_uv"``: mean ``u * v`` (negative when pairs and reverses separate; about 0 at collapse).

    With antisymmetric scoring (``v = -u``) Hit is 1 by construction (for every non-zero score):
    judge such a model by Con@k, reported beside an untrained network's Con@k on the same data.

    Args:
        num_pairs: K = T // 2.

    Shape:
        - u, v: ``(B, K)`` forward and reverse scores, any B.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    hits: Tensor
    cons: Tensor
    total: Tensor
    abs_sum: Tensor
    uv_sum: Tensor

    def __init__(self, num_pairs: int = 3, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_pairs < 1:
            raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
        self.num_pairs = int(num_pairs)
        self.add_state("hits", torch.zeros(num_pairs, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("cons", torch.zeros(max(num_pairs - 1, 0), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("abs_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("uv_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, u: Tensor, v: Tensor) -> None:
        if u.ndim != 2 or u.shape != v.shape or u.shape[1] != self.num_pairs:
            raise ValueError(
                f"u and v must both be (B, {self.num_pairs}), got {tuple(u.shape)} and {tuple(v.shape)}"
            )
        u = u.detach()
        v = v.detach()
        # Out of place: states reset under torch.inference_mode (Trainer.validate) stay updatable.
        self.hits = self.hits + (u * v < 0).sum(dim=0)
        sign = torch.sign(u)  # sign(NaN) is 0, so NaN is masked out explicitly
        agree = ((sign == sign[:, :1]) & ~u.isnan()).long().cumprod(dim=1)  # agree[:, i]: pairs 0..i share a sign
        self.cons = self.cons + agree[:, 1:].sum(dim=0)
        self.total = self.total + u.shape[0]
        self.abs_sum = self.abs_sum + u.abs().sum(dtype=torch.float64)
        self.uv_sum = self.uv_sum + (u.double() * v.double()).sum()

    def compute(self) -> dict[str, Tensor]:
        n = self.total.double().clamp_min(1)
        hits = self.hits.double() / n
        cons = self.cons.double() / n
        out = {"hit": hits[0]}
        out.update({f"hit_k{k + 1}": hits[k] for k in range(self.num_pairs)})
        out.update({f"con{k + 2}": cons[k] for k in range(self.num_pairs - 1)})
        out["score_abs"] = self.abs_sum / (n * self.num_pairs)
        out["score_uv"] = self.uv_sum / (n * self.num_pairs)
        return {key: value.float() for key, value in out.items()}

"""Losses as function + module pairs (torch only).

Ordering losses take pair scores ``(u, v)``; deblurring losses take ``(pred, sharp)`` sequences and
return a dict with key ``loss``.
"""

from hypercut.losses.deblur import (
    BestDirectionLoss,
    Canonicalizer,
    DeblurLoss,
    HyperCUTLoss,
    HyperCUTReleasedLoss,
    NaiveLoss,
    OrderInvariantLoss,
    alpha_schedule,
    best_direction_loss,
    charbonnier,
    hypercut_loss,
    hypercut_released_loss,
    naive_loss,
    order_invariant_loss,
    side_penalty,
)
from hypercut.losses.ordering import (
    HyperCUTOrderingLoss,
    MarginOrderingLoss,
    hypercut_ordering_loss,
    margin_ordering_loss,
)

__all__ = [
    "BestDirectionLoss",
    "Canonicalizer",
    "DeblurLoss",
    "HyperCUTLoss",
    "HyperCUTOrderingLoss",
    "HyperCUTReleasedLoss",
    "MarginOrderingLoss",
    "NaiveLoss",
    "OrderInvariantLoss",
    "alpha_schedule",
    "best_direction_loss",
    "charbonnier",
    "hypercut_loss",
    "hypercut_ordering_loss",
    "hypercut_released_loss",
    "margin_ordering_loss",
    "naive_loss",
    "order_invariant_loss",
    "side_penalty",
]

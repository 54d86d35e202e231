"""Per-frame PSNR/SSIM with order-free variants, the HyperCUT ordering Hit/Con, and the canonical order.

The functional forms are plain torch. The torchmetrics ``Metric`` classes (batched, any batch size,
correct across DDP ranks) are imported on first use: importing torchmetrics takes seconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hypercut.metrics.functional import SequenceScores, psnr_per_frame, sequence_scores, ssim_per_frame

if TYPE_CHECKING:
    from hypercut.metrics.canonical import CanonicalOrderMetrics
    from hypercut.metrics.image import VideoMetrics
    from hypercut.metrics.ordering import OrderingMetrics, ordering_metric_keys

__all__ = [
    "CanonicalOrderMetrics",
    "OrderingMetrics",
    "SequenceScores",
    "VideoMetrics",
    "ordering_metric_keys",
    "psnr_per_frame",
    "sequence_scores",
    "ssim_per_frame",
]

_LAZY = {
    "CanonicalOrderMetrics": "hypercut.metrics.canonical",
    "VideoMetrics": "hypercut.metrics.image",
    "OrderingMetrics": "hypercut.metrics.ordering",
    "ordering_metric_keys": "hypercut.metrics.ordering",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value

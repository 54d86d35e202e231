"""torchmetrics Metrics: per-frame PSNR/SSIM with p-variants, and HyperCUT ordering Hit/Con.

All are batched, accept any batch size and reduce correctly across DDP ranks.
"""

from hypercut.metrics.image import VideoMetrics, psnr_per_frame, ssim_per_frame
from hypercut.metrics.ordering import OrderingMetrics, ordering_metric_keys

__all__ = ["OrderingMetrics", "VideoMetrics", "ordering_metric_keys", "psnr_per_frame", "ssim_per_frame"]

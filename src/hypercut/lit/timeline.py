"""A callback that records validation metrics against wall-clock time (time-to-quality curves)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["MetricTimeline"]


class MetricTimeline(Callback):
    """After every validation, append ``{"wall_s", "step", <metrics>}`` to a JSON list at ``path``.

    ``wall_s`` counts from the start of ``fit`` (the sanity check included), so curves of different
    recipes run on the same machine can be drawn on one time axis.

    Args:
        path: the JSON file (rewritten after every validation, so a killed run keeps its curve).
        keys: the logged metrics to record (those missing at a validation are left out).
    """

    def __init__(self, path: str | Path, keys: Sequence[str] = ("val/ppsnr", "val/identity_ppsnr")) -> None:
        self.path = Path(path)
        self.keys = tuple(keys)
        self.points: list[dict[str, Any]] = []
        self._start = 0.0

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        point: dict[str, Any] = {"wall_s": round(time.perf_counter() - self._start, 2), "step": trainer.global_step}
        point.update({k: float(metrics[k]) for k in self.keys if k in metrics})
        self.points.append(point)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.points, indent=1))

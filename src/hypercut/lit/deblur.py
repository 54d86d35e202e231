"""LightningModule for image-to-video deblurring."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from hypercut.lit.callbacks import OptimizerFactory, SchedulerFactory, configure_optimizers
from hypercut.losses import Canonicalizer
from hypercut.metrics import CanonicalOrderMetrics, OrderingMetrics, VideoMetrics


class DeblurLitModule(LightningModule):
    """Trains a deblurring backbone ``blurry (B,3,H,W) -> (B,T,3,H,W)`` with an injected loss.

    Logs ``train/loss`` (and the loss's other terms), and per stage (``val``/``test``) the plain and
    p-variant PSNR/SSIM per frame (``val/ppsnr``, ``val/ppsnr_f1`` ...), the same metrics for the
    identity baseline (the blurry input repeated T times, ``val/identity_ppsnr`` ...), and, when an
    ordering model is given, the Hit/Con of the predictions (``val/pred_con3`` ...), their PSNR against
    the ground truth in the canonical order (``val/canon_psnr``, ``val/canon_psnr_f1`` ...) and the
    order they follow (``val/order_follows``, ``val/order_reversed``, ``val/order_symmetric``; see
    :class:`~hypercut.metrics.CanonicalOrderMetrics`). ``validation_step`` returns the clamped
    prediction, which :class:`~hypercut.lit.ValidationMedia` turns into strips and GIFs.

    The frozen ordering model is given here, once: every training step calls
    ``loss(pred, sharp, step=global_step, canonicalizer=canonicalizer)`` (the one call of
    :class:`~hypercut.losses.DeblurLoss`), and every evaluation step canonicalises the ground truth
    once and scores the prediction once.

    Args:
        net: the backbone.
        loss: a module taking ``(pred, sharp, step=, canonicalizer=)`` and returning a dict with key
            ``loss`` (see :mod:`hypercut.losses`).
        canonicalizer: the frozen ordering model (:class:`~hypercut.losses.Canonicalizer`, e.g.
            :class:`hypercut.ordering.OrderCanonicalizer`); required by a loss with
            ``needs_canonicalizer``, optional otherwise (then it only measures the predictions' order).
            If it is an ``nn.Module`` it is frozen here and kept in eval mode.
        optimizer: factory ``params -> Optimizer`` (a Hydra ``_partial_``); default Adam(lr=2e-4).
        scheduler: optional factory ``optimizer -> LRScheduler``, stepped every ``scheduler_interval``.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        num_frames: T, for the per-frame metric names.
        net_spec: how to rebuild ``net`` without this module (see :mod:`hypercut.export`); stored
            in the checkpoint so ``hypercut-export`` can write a weights file.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        canonicalizer: Canonicalizer | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        num_frames: int = 7,
        net_spec: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if canonicalizer is None and getattr(loss, "needs_canonicalizer", False):
            raise ValueError(f"{type(loss).__name__} needs the frozen ordering model: pass canonicalizer=")
        self.save_hyperparameters(ignore=["net", "loss", "canonicalizer", "optimizer", "scheduler"])
        self.net = net
        self.loss = loss
        if isinstance(canonicalizer, nn.Module):
            canonicalizer.requires_grad_(False)
            canonicalizer.eval()
        self.canonicalizer = canonicalizer
        self.optimizer_factory = optimizer if optimizer is not None else partial(torch.optim.Adam, lr=2e-4)
        self.scheduler_factory = scheduler
        self.val_metrics = VideoMetrics(num_frames, data_range=1.0)
        self.val_identity = VideoMetrics(num_frames, data_range=1.0)
        self.test_metrics = VideoMetrics(num_frames, data_range=1.0)
        self.test_identity = VideoMetrics(num_frames, data_range=1.0)
        num_pairs = num_frames // 2
        self.val_order = OrderingMetrics(num_pairs) if self.canonicalizer is not None else None
        self.test_order = OrderingMetrics(num_pairs) if self.canonicalizer is not None else None
        self.val_canonical = CanonicalOrderMetrics(num_frames) if self.canonicalizer is not None else None
        self.test_canonical = CanonicalOrderMetrics(num_frames) if self.canonicalizer is not None else None

    def train(self, mode: bool = True) -> DeblurLitModule:
        """Sets the training mode of everything but the frozen ordering model (always in eval mode)."""
        super().train(mode)
        if isinstance(self.canonicalizer, nn.Module):
            self.canonicalizer.eval()
        return self

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drops the ordering model's second copy that checkpoints kept under ``loss.canonicalizer.``
        while the losses held it (the same weights are under ``canonicalizer.``)."""
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("loss.canonicalizer.")]:
            del state[key]

    def forward(self, blurry: Tensor) -> Tensor:
        """Shape: ``(B, 3, H, W) -> (B, T, 3, H, W)``."""
        return self.net(blurry)

    def _predict(self, batch: dict[str, Any]) -> Tensor:
        """The net on ``batch``; an oracle-centre backbone also receives the true middle frame."""
        if getattr(self.net, "oracle_center", False):
            sharp = batch["sharp"]
            return self.net(batch["blurry"], center=sharp[:, sharp.shape[1] // 2])
        return self(batch["blurry"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        pred = self._predict(batch)
        terms = self.loss(pred, batch["sharp"], step=self.global_step, canonicalizer=self.canonicalizer)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step}, "
                f"batch {batch_idx}, sample ids {list(batch['id'])}"
            )
        batch_size = batch["blurry"].shape[0]
        for key, value in terms.items():
            self.log(f"train/{key}", value.detach(), prog_bar=key == "loss", batch_size=batch_size)
        return loss

    def _evaluate(self, batch: dict[str, Any], stage: str) -> Tensor:
        blurry, sharp = batch["blurry"], batch["sharp"]
        pred = self._predict(batch).clamp(0, 1)
        metrics, identity, order, canonical_metrics = self._stage_metrics(stage)
        metrics.update(pred.float(), sharp.float())
        identity.update(blurry.unsqueeze(1).expand_as(sharp).float(), sharp.float())
        if self.canonicalizer is not None and order is not None and canonical_metrics is not None:
            canonical, _, _ = self.canonicalizer.canonicalize(sharp.float())
            u, v = self.canonicalizer.scores(pred.float())
            order.update(u, v)
            canonical_metrics.update(pred.float(), canonical)
        return pred

    def _stage_metrics(
        self, stage: str
    ) -> tuple[VideoMetrics, VideoMetrics, OrderingMetrics | None, CanonicalOrderMetrics | None]:
        if stage == "val":
            return self.val_metrics, self.val_identity, self.val_order, self.val_canonical
        return self.test_metrics, self.test_identity, self.test_order, self.test_canonical

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Returns the prediction clamped to [0, 1]; Shape: ``(B, T, 3, H, W)``."""
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _log_stage(self, stage: str) -> None:
        metrics, identity, order, canonical_metrics = self._stage_metrics(stage)
        values = {f"{stage}/{k}": v for k, v in metrics.compute().items()}
        values.update({f"{stage}/identity_{k}": v for k, v in identity.compute().items() if "psnr" in k or "ssim" in k})
        if order is not None:
            values.update({f"{stage}/pred_{k}": v for k, v in order.compute().items()})
            order.reset()
        if canonical_metrics is not None:
            values.update({f"{stage}/{k}": v for k, v in canonical_metrics.compute().items()})
            canonical_metrics.reset()
        # Already reduced over ranks by torchmetrics; sync_dist only tells Lightning so (same values).
        self.log_dict(values, sync_dist=True)
        metrics.reset()
        identity.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_stage("val")

    def on_test_epoch_end(self) -> None:
        self._log_stage("test")

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.net, self.optimizer_factory, self.scheduler_factory, self.hparams["scheduler_interval"])

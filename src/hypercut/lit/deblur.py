"""LightningModule for image-to-video deblurring."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image
from torch import Tensor, nn

from hypercut.media import frame_strip, save_gif
from hypercut.metrics import OrderingMetrics, VideoMetrics

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class DeblurLitModule(LightningModule):
    """Trains a deblurring backbone ``blurry (B,3,H,W) -> (B,T,3,H,W)`` with an injected loss.

    Logs ``train/loss`` (and the loss's other terms), and per stage (``val``/``test``) the plain and
    p-variant PSNR/SSIM per frame (``val/ppsnr``, ``val/ppsnr_f1`` ...), the same metrics for the
    identity baseline (the blurry input repeated T times, ``val/identity_ppsnr`` ...), and, when an
    ordering model is given, the Hit/Con of the predictions (``val/pred_con3`` ...). A frame strip and a
    GIF of the first validation samples are written under the run's log folder every validation and
    sent to W&B or TensorBoard when that is the logger.

    Args:
        net: the backbone.
        loss: a module ``(pred, sharp) -> dict`` with key ``loss`` (see :mod:`hypercut.losses`). If its
            ``forward`` accepts ``step``, it receives the global step (for warm-ups).
        canonicalizer: optional frozen ordering model (:class:`hypercut.ordering.OrderCanonicalizer`)
            used to measure how consistently the predictions are ordered. Defaults to the loss's own
            ``canonicalizer`` when it has one.
        optimizer: factory ``params -> Optimizer`` (a Hydra ``_partial_``); default Adam(lr=2e-4).
        scheduler: optional factory ``optimizer -> LRScheduler``, stepped every ``scheduler_interval``.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        num_frames: T, for the per-frame metric names.
        num_media_samples: how many validation samples go into the strip and GIF (0 disables media).
        net_spec: how to rebuild ``net`` without this module (see :mod:`hypercut.export`); stored
            in the checkpoint so ``hypercut-export`` can write a weights file.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        canonicalizer: nn.Module | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        num_frames: int = 7,
        num_media_samples: int = 4,
        net_spec: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "loss", "canonicalizer", "optimizer", "scheduler"])
        self.net = net
        self.loss = loss
        self.canonicalizer = canonicalizer if canonicalizer is not None else getattr(loss, "canonicalizer", None)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._loss_takes_step = "step" in inspect.signature(loss.forward).parameters
        self.val_metrics = VideoMetrics(num_frames, data_range=1.0)
        self.val_identity = VideoMetrics(num_frames, data_range=1.0)
        self.test_metrics = VideoMetrics(num_frames, data_range=1.0)
        self.test_identity = VideoMetrics(num_frames, data_range=1.0)
        num_pairs = num_frames // 2
        self.val_order = OrderingMetrics(num_pairs) if self.canonicalizer is not None else None
        self.test_order = OrderingMetrics(num_pairs) if self.canonicalizer is not None else None
        self._media_batch: dict[str, Tensor] | None = None

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
        kwargs = {"step": self.global_step} if self._loss_takes_step else {}
        terms = self.loss(pred, batch["sharp"], **kwargs)
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
        metrics, identity, order = (
            (self.val_metrics, self.val_identity, self.val_order)
            if stage == "val"
            else (self.test_metrics, self.test_identity, self.test_order)
        )
        metrics.update(pred.float(), sharp.float())
        identity.update(blurry.unsqueeze(1).expand_as(sharp).float(), sharp.float())
        if order is not None and self.canonicalizer is not None:
            u, v = self.canonicalizer.model(pred.float())  # type: ignore[operator]
            order.update(u, v)
        return pred

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        pred = self._evaluate(batch, "val")
        if batch_idx == 0 and self.hparams["num_media_samples"] > 0:
            n = self.hparams["num_media_samples"]
            self._media_batch = {
                "blurry": batch["blurry"][:n].detach().cpu(),
                "sharp": batch["sharp"][:n].detach().cpu(),
                "pred": pred[:n].detach().float().cpu(),
            }

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Needs only ``batch["blurry"]``; returns ``(B, T, 3, H, W)`` clamped to [0, 1]."""
        return self(batch["blurry"]).clamp(0, 1)

    def _log_stage(self, stage: str) -> None:
        metrics, identity, order = (
            (self.val_metrics, self.val_identity, self.val_order)
            if stage == "val"
            else (self.test_metrics, self.test_identity, self.test_order)
        )
        values = {f"{stage}/{k}": v for k, v in metrics.compute().items()}
        values.update({f"{stage}/identity_{k}": v for k, v in identity.compute().items() if "psnr" in k or "ssim" in k})
        if order is not None:
            values.update({f"{stage}/pred_{k}": v for k, v in order.compute().items()})
            order.reset()
        # Already reduced over ranks by torchmetrics; sync_dist only tells Lightning so (same values).
        self.log_dict(values, sync_dist=True)
        metrics.reset()
        identity.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_stage("val")
        if self._media_batch is not None and not self.trainer.sanity_checking:
            self._write_media(self._media_batch)
        self._media_batch = None

    def on_test_epoch_end(self) -> None:
        self._log_stage("test")

    def _write_media(self, media: dict[str, Tensor]) -> None:
        """Frame strips and GIFs of the first validation samples; sent to W&B / TensorBoard if used."""
        if not self.trainer.is_global_zero:
            return
        root = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "media"
        root.mkdir(parents=True, exist_ok=True)
        strips, gifs = [], []
        for i in range(media["pred"].shape[0]):
            strip = frame_strip(media["blurry"][i], media["pred"][i], media["sharp"][i])
            path = root / f"step{self.global_step:07d}_sample{i}.png"
            Image.fromarray(strip).save(path)
            strips.append((strip, path))
            gif = root / f"step{self.global_step:07d}_sample{i}.gif"
            save_gif(torch.cat([media["pred"][i], media["sharp"][i]], dim=-1), gif)
            gifs.append(gif)
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("val/strip", [str(p) for _, p in strips], step=self.global_step)
                logger.log_video("val/gif", [str(g) for g in gifs], step=self.global_step, format=["gif"] * len(gifs))
            elif isinstance(logger, TensorBoardLogger):
                for i, (strip, _) in enumerate(strips):
                    logger.experiment.add_image(f"val/strip_{i}", strip, self.global_step, dataformats="HWC")

    def configure_optimizers(self) -> Any:
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params) if self.optimizer_factory else torch.optim.Adam(params, lr=2e-4)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams["scheduler_interval"]},
        }

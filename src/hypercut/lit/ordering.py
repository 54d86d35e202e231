"""LightningModule that trains the HyperCUT ordering model on sharp sequences."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from hypercut.lit.callbacks import OptimizerFactory, SchedulerFactory, configure_optimizers
from hypercut.losses.ordering import HyperCUTOrderingLoss
from hypercut.metrics.ordering import OrderingMetrics
from hypercut.ordering.scoring import OrderingModel

__all__ = ["RELEASED_OPTIMIZER", "RELEASED_SCHEDULER", "OrderingLitModule"]

RELEASED_OPTIMIZER: OptimizerFactory = partial(torch.optim.Adamax, lr=5e-4)
"""Released optimizer: Adamax, lr 5e-4."""
RELEASED_SCHEDULER: SchedulerFactory = partial(torch.optim.lr_scheduler.StepLR, step_size=3, gamma=0.9)
"""Released schedule: lr x 0.9 every 3 epochs (stepped once per epoch)."""


class OrderingLitModule(L.LightningModule):
    """Trains an :class:`~hypercut.ordering.OrderingModel` on ``batch["sharp"]``.

    A non-finite training loss stops the run with a ``FloatingPointError`` naming the step, the batch
    and the sample ids.

    Logs ``train/loss`` and ``train/score_abs`` per step, and per epoch ``val/loss`` plus every key
    of :class:`~hypercut.metrics.OrderingMetrics` as ``val/<key>`` (``val/hit``, ``val/hit_k1`` ..,
    ``val/con2``, ``val/con3`` .., ``val/score_abs``, ``val/score_uv``); the same with ``test/``.
    With an antisymmetric model (the default) ``val/hit`` is 1 by construction: judge it by Con@k.

    Args:
        net: The ordering model to train (``net``, as in :class:`DeblurLitModule`).
        loss: ``loss(u, v) -> scalar``; default :class:`~hypercut.losses.HyperCUTOrderingLoss`.
        optimizer: ``optimizer(params) -> Optimizer`` (e.g. a ``functools.partial`` or Hydra
            ``_partial_``); ``None`` uses the released Adamax(lr=5e-4).
        scheduler: ``scheduler(optimizer) -> LRScheduler``, stepped every ``scheduler_interval``;
            defaults to the released StepLR(step_size=3, gamma=0.9); ``None`` for a constant learning rate.
        scheduler_interval: ``"epoch"`` or ``"step"`` (for a stream without epochs).
        num_frames: T of the sequences (the metrics track K = T // 2 pairs).
        net_spec: how to rebuild ``net`` without this module (see :mod:`hypercut.export`);
            stored in the hyper-parameters so a ``.ckpt`` can be exported to a weights-only file.
            Checkpoints written before the rename (``model``, ``model_spec``) still load.

    Shape:
        - batch["sharp"]: ``(B, T, 3, H, W)``.
    """

    def __init__(
        self,
        net: OrderingModel,
        loss: nn.Module | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = RELEASED_SCHEDULER,
        scheduler_interval: str = "epoch",
        num_frames: int = 7,
        net_spec: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler"])
        self.net = net
        self.loss = loss if loss is not None else HyperCUTOrderingLoss()
        self.optimizer_factory = optimizer if optimizer is not None else RELEASED_OPTIMIZER
        self.scheduler_factory = scheduler
        self.num_pairs = num_frames // 2
        self.val_metrics = OrderingMetrics(self.num_pairs)
        self.test_metrics = OrderingMetrics(self.num_pairs)

    def forward(self, sharp: Tensor) -> tuple[Tensor, Tensor]:
        """Shape: ``(B, T, 3, H, W) -> (u, v)``, each ``(B, T // 2)``."""
        return self.net(sharp)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Renames the ``model.*`` weights and ``model_spec`` of checkpoints from before ``net``."""
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("model.")]:
            state["net." + key[len("model.") :]] = state.pop(key)
        hparams = checkpoint.get("hyper_parameters", {})
        if "model_spec" in hparams:
            hparams["net_spec"] = hparams.pop("model_spec")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        sharp = batch["sharp"]
        u, v = self.net(sharp)
        loss = self.loss(u, v)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step}, "
                f"batch {batch_idx}, sample ids {list(batch.get('id', []))}"
            )
        bs = sharp.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/score_abs", u.detach().abs().mean(), batch_size=bs)
        return loss

    def _eval_step(self, batch: dict[str, Any], stage: str, metrics: OrderingMetrics) -> Tensor:
        sharp = batch["sharp"]
        u, v = self.net(sharp)
        loss = self.loss(u, v)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=sharp.shape[0])
        metrics.update(u, v)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test", self.test_metrics)

    def _log_metrics(self, stage: str, metrics: OrderingMetrics) -> None:
        values = metrics.compute()
        shown = f"con{self.num_pairs}" if self.num_pairs > 1 else "hit"
        for key, value in values.items():
            self.log(f"{stage}/{key}", value, prog_bar=key == shown)
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.net, self.optimizer_factory, self.scheduler_factory, self.hparams["scheduler_interval"])

"""Callbacks, schedules and the optimizer set-up shared by both LightningModules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from PIL import Image
from torch import Tensor, nn

from hypercut.media import frame_strip, save_gif

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def configure_optimizers(
    net: nn.Module, optimizer: OptimizerFactory, scheduler: SchedulerFactory | None, interval: str = "epoch"
) -> Any:
    """What a LightningModule's ``configure_optimizers`` returns to train ``net``'s trainable parameters.

    Args:
        net: the trained network (frozen parameters are left out).
        optimizer: factory ``params -> Optimizer`` (a ``functools.partial`` or Hydra ``_partial_``).
        scheduler: optional factory ``optimizer -> LRScheduler``.
        interval: ``"epoch"`` or ``"step"``: how often the scheduler is stepped.

    Returns:
        The optimizer, or Lightning's ``{"optimizer", "lr_scheduler"}`` dict when there is a scheduler.
    """
    built = optimizer([p for p in net.parameters() if p.requires_grad])
    if scheduler is None:
        return built
    return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler(built), "interval": interval}}


class ValidationMedia(Callback):
    """Frame strips and GIFs of the first validation samples, written at every validation.

    For each of the first ``num_samples`` samples of the first validation batch:
    ``<dirpath>/step<step>_sample<i>.png`` (rows: the blurry input, the prediction, the ground truth)
    and ``.gif`` (prediction beside ground truth); the strips and GIFs also go to the run's W&B logger
    (``val/strip``, ``val/gif``) and the strips to TensorBoard (``val/strip_<i>``). Acts on modules
    whose ``validation_step`` returns the predicted video (:class:`DeblurLitModule`), on rank 0, not
    during the sanity check.

    Args:
        num_samples: how many samples are shown.
        dirpath: the folder of the files; default ``<trainer.default_root_dir>/media``.
    """

    def __init__(self, num_samples: int = 4, dirpath: str | Path | None = None) -> None:
        self.num_samples = int(num_samples)
        self.dirpath = None if dirpath is None else Path(dirpath)
        self._batch: dict[str, Tensor] | None = None

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keeps the first batch's samples (Shape: ``outputs`` ``(B, T, 3, H, W)``)."""
        if batch_idx or dataloader_idx or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if not (isinstance(outputs, Tensor) and outputs.ndim == 5 and isinstance(batch, dict) and "sharp" in batch):
            return
        n = self.num_samples
        self._batch = {
            "blurry": batch["blurry"][:n].detach().float().cpu(),
            "sharp": batch["sharp"][:n].detach().float().cpu(),
            "pred": outputs[:n].detach().float().cpu(),
        }

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        media, self._batch = self._batch, None
        if media is None or self.num_samples <= 0:
            return
        root = self.dirpath or Path(trainer.default_root_dir) / "media"
        root.mkdir(parents=True, exist_ok=True)
        step = trainer.global_step
        strips, pngs, gifs = [], [], []
        for i in range(media["pred"].shape[0]):
            strip = frame_strip(media["blurry"][i], media["pred"][i], media["sharp"][i])
            png = root / f"step{step:07d}_sample{i}.png"
            Image.fromarray(strip).save(png)
            gif = save_gif(torch.cat([media["pred"][i], media["sharp"][i]], dim=-1), root / f"step{step:07d}_sample{i}.gif")
            strips.append(strip)
            pngs.append(str(png))
            gifs.append(str(gif))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("val/strip", pngs, step=step)
                logger.log_video("val/gif", gifs, step=step, format=["gif"] * len(gifs))
            elif isinstance(logger, TensorBoardLogger):
                for i, strip in enumerate(strips):
                    logger.experiment.add_image(f"val/strip_{i}", strip, step, dataformats="HWC")


class CheckpointOnInterrupt(Callback):
    """Writes ``<dirpath>/last.ckpt`` when training is stopped by Ctrl-C or SIGTERM, so it can be resumed.

    Lightning ends a run on ``KeyboardInterrupt`` (SIGINT) and, at the end of the current batch, on
    :class:`~lightning.pytorch.utilities.exceptions.SIGTERMException` (SIGTERM: what ``timeout``,
    ``docker stop`` and SLURM preemption send); without this callback the work since the last
    validation would be lost. Other exceptions (for example the non-finite-loss error of the
    LightningModules) leave the last good ``last.ckpt`` untouched. Lightning's ``OnExceptionCheckpoint``
    does not fit: it saves on every exception and deletes its file when a run ends normally.

    Args:
        dirpath: the checkpoint folder (the same as ``ModelCheckpoint``'s).
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            path = self.dirpath / "last.ckpt"
            trainer.save_checkpoint(path, weights_only=False)  # the full state, to resume from
            rank_zero_info(f"Interrupted at step {trainer.global_step}: resumable checkpoint at {path}")


class SamplerEpochSync(Callback):
    """Tells the training sampler the epoch as ``trainer.current_epoch`` at every epoch start.

    Lightning itself calls ``sampler.set_epoch`` with its count of processed epochs, which after a
    resume from an end-of-epoch checkpoint is one ahead of the uninterrupted run's; seeded samplers
    (:class:`hypercut.data.datamodule.EpochShuffleSampler`) would then draw another permutation and
    augmentation. With this callback a resumed run sees exactly the batches the uninterrupted one saw.
    """

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        set_epoch = getattr(sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(trainer.current_epoch)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 100, min_factor: float = 0.05
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up to the base learning rate, then cosine decay to ``min_factor`` of it.

    ``SequentialLR(LinearLR, CosineAnnealingLR)``: at step ``s < warmup_steps`` the learning rate is
    ``(s + 1) / warmup_steps`` of the base one, then it follows a half cosine from the base rate down to
    ``min_factor`` of it, reached at ``total_steps``.

    Args:
        optimizer: the optimizer whose learning rates are scaled (one base rate for all its groups).
        total_steps: optimisation steps of the whole run.
        warmup_steps: steps of the linear warm-up (0: none).
        min_factor: the final learning rate as a fraction of the base one.

    Returns:
        A scheduler to step once per optimisation step.
    """
    schedulers = torch.optim.lr_scheduler
    rates = {group["lr"] for group in optimizer.param_groups}
    if len(rates) != 1:
        raise ValueError(f"warmup_cosine: expected one learning rate for all parameter groups, got {sorted(rates)}")
    cosine = schedulers.CosineAnnealingLR(
        optimizer, T_max=max(1, total_steps - warmup_steps), eta_min=min_factor * rates.pop()
    )
    if warmup_steps <= 0:
        return cosine
    warmup = schedulers.LinearLR(optimizer, 1 / warmup_steps, 1.0, total_iters=max(1, warmup_steps - 1))
    return schedulers.SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, without the "Epoch 1/-2" of a run bounded by ``max_steps`` only.

    With ``max_epochs=-1`` (no epoch limit) the bar says ``Epoch 1`` instead of ``Epoch 1/-2``.
    """

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is not None and self.trainer.max_epochs < 0:
            description = f"Epoch {current_epoch}"
            return f"{description:{len(self.validation_description)}}"
        return super()._get_train_description(current_epoch)

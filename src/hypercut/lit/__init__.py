"""LightningModules and callbacks (torch + Lightning; no Hydra, no wandb)."""

from hypercut.lit.callbacks import (
    CheckpointOnInterrupt,
    SamplerEpochSync,
    StepProgressBar,
    ValidationMedia,
    configure_optimizers,
    warmup_cosine,
)
from hypercut.lit.deblur import DeblurLitModule
from hypercut.lit.ordering import OrderingLitModule

__all__ = [
    "CheckpointOnInterrupt",
    "DeblurLitModule",
    "OrderingLitModule",
    "SamplerEpochSync",
    "StepProgressBar",
    "ValidationMedia",
    "configure_optimizers",
    "warmup_cosine",
]

"""Evaluate a weights file with N CPU DDP ranks (gloo); rank 0 writes the test metrics as JSON.

Usage: python ddp_eval_worker.py DATA_ROOT WEIGHTS OUT_DIR DEVICES
Run in a subprocess by tests/test_training.py: Lightning DDP inside the pytest process is fragile.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from lightning.pytorch import Trainer  # noqa: E402

from hypercut.data import BlurSequenceDataModule  # noqa: E402
from hypercut.export import load_pretrained  # noqa: E402
from hypercut.lit import DeblurLitModule  # noqa: E402
from hypercut.losses import NaiveLoss  # noqa: E402


def main() -> None:
    root, weights, out, devices = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    module = DeblurLitModule(net=load_pretrained(weights), loss=NaiveLoss())
    datamodule = BlurSequenceDataModule(root, batch_size=1, crop_size=32, eval_batch_size=1)
    trainer = Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        max_steps=2,
        limit_val_batches=0,
        default_root_dir=str(out),
    )
    trainer.test(module, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if devices > 1:
        # Training runs under DDP too (gradients all-reduced over gloo).
        trainer.fit(module, datamodule=datamodule)
        assert trainer.global_step == 2
    if trainer.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()

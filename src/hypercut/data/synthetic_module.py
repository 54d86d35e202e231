"""A DataModule over our synthetic data: it writes the dataset on first use (``prepare_data``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypercut.data.datamodule import BlurSequenceDataModule
from hypercut.data.synth import synthesize_dataset


class SyntheticDataModule(BlurSequenceDataModule):
    """:class:`BlurSequenceDataModule` over a synthetic dataset that is synthesised if missing.

    ``prepare_data`` (run once, on rank 0) calls :func:`~hypercut.data.synthesize_dataset` when
    ``root/metadata.json`` does not exist yet; an existing dataset is read as it is, so a changed
    recipe needs a new ``root``.

    Args:
        root: where the dataset lives (or will be written).
        num_samples: samples to synthesise (split train/val/test by ``splits``).
        size: ``(height, width)`` of the synthesised images.
        num_frames: T.
        synth_seed: seed of the synthesis (independent of the training seed).
        splits: train, val, test fractions.
        **kwargs: everything else of :class:`BlurSequenceDataModule` (batch size, crops, workers...).
    """

    def __init__(
        self,
        root: str | Path,
        num_samples: int = 400,
        size: tuple[int, int] = (64, 64),
        num_frames: int = 7,
        synth_seed: int = 0,
        splits: tuple[float, float, float] = (0.8, 0.1, 0.1),
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, **kwargs)
        self.synth = {
            "num_samples": int(num_samples),
            "size": (int(size[0]), int(size[1])),
            "num_frames": int(num_frames),
            "seed": int(synth_seed),
            "splits": tuple(float(s) for s in splits),
        }

    def prepare_data(self) -> None:
        root = Path(self.root)  # type: ignore[arg-type]
        if not (root / self.metadata_file).is_file():
            synthesize_dataset(root, **self.synth)  # type: ignore[arg-type]

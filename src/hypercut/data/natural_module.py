"""A DataModule that renders natural-image blur sequences on the fly (nothing written to disk)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from hypercut.data.datasets import collate_sequences
from hypercut.data.natural import MotionRecipe, NaturalSceneSet, NaturalSceneStream, PhotoLibrary


class NaturalDataModule(LightningDataModule):
    """Endless training scenes from the train photos; fixed val/test sets from held-out photos.

    Training items are rendered fresh for every batch (:class:`~hypercut.data.natural.NaturalSceneStream`,
    one stream per DataLoader worker and DDP rank), so a run sees as much data as it has steps.
    Validation and test sets are deterministic (:class:`~hypercut.data.natural.NaturalSceneSet`) and
    come from the photos of the ``val`` and ``test`` partitions: no evaluation photo is trained on.
    Train with ``trainer.max_steps`` (the training stream has no length).

    Args:
        sources: photo sources (``skimage``, ``opencv-doc``; the latter is skipped if not installed).
        folders: extra folders of photographs (each partitioned on its own).
        num_frames: ``T``.
        crop_size: side of the training items.
        eval_size: side of the validation and test items.
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        num_val: validation items.
        num_test: test items.
        subframes: sub-frames per sharp frame.
        motion: :class:`~hypercut.data.natural.MotionRecipe` fields (a dict, so configs can set them).
        num_workers: DataLoader workers rendering training items.
        seed: seed of the training stream and of the evaluation sets.
    """

    def __init__(
        self,
        sources: Sequence[str] = ("skimage", "opencv-doc"),
        folders: Sequence[str | Path] = (),
        num_frames: int = 7,
        crop_size: int = 96,
        eval_size: int = 128,
        batch_size: int = 8,
        eval_batch_size: int = 8,
        num_val: int = 32,
        num_test: int = 64,
        subframes: int = 5,
        motion: dict[str, Any] | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.sources = tuple(sources)
        self.folders = tuple(folders)
        self.num_frames = int(num_frames)
        self.crop_size = int(crop_size)
        self.eval_size = int(eval_size)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.num_val = int(num_val)
        self.num_test = int(num_test)
        self.subframes = int(subframes)
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in (motion or {}).items()}
        self.motion = MotionRecipe(**fields)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self._library: PhotoLibrary | None = None
        self._sets: dict[str, Dataset] = {}

    @property
    def library(self) -> PhotoLibrary:
        """The photographs, loaded on first use."""
        if self._library is None:
            self._library = PhotoLibrary.from_sources(self.sources, self.folders)
        return self._library

    def has_split(self, split: str) -> bool:
        """Whether ``split`` (train, val or test) has photographs to render from."""
        return split in ("train", "val", "test") and bool(self.library.names(split))

    def _set(self, split: str, num: int, offset: int) -> Dataset:
        if split in self._sets:
            return self._sets[split]
        photos = self.library.images(split)
        if not photos:
            raise ValueError(f"no {split} photographs in sources {list(self.sources)}")
        size = (self.eval_size, self.eval_size)
        self._sets[split] = NaturalSceneSet(
            photos, num, size, self.num_frames, self.subframes, self.motion, self.seed + offset, split
        )
        return self._sets[split]

    def _loader(self, ds: Dataset, batch_size: int, workers: int = 0) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_sequences)

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        stream = NaturalSceneStream(
            self.library.images("train"),
            (self.crop_size, self.crop_size),
            self.num_frames,
            self.subframes,
            self.motion,
            self.seed,
            rank,
        )
        return self._loader(stream, self.batch_size, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._set("val", self.num_val, 1_000), self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._set("test", self.num_test, 2_000), self.eval_batch_size)

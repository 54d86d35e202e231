"""``BlurSequenceDataModule``: train/val/test from one metadata file."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from hypercut.data.datasets import BlurSequenceDataset, collate_sequences
from hypercut.data.metadata import DatasetMetadata, check_dataset, read_metadata, resolve_metadata_path
from hypercut.data.packed import PackedSequenceDataset, find_packed
from hypercut.data.transforms import CenterCropMultiple, PairedAugment

__all__ = ["BlurSequenceDataModule", "EpochShuffleSampler"]


class EpochShuffleSampler(Sampler[int]):
    """A random permutation per epoch drawn from ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every training epoch (on a resumed run too), which also
    restarts the dataset's augmentation randomness from ``(seed, epoch)``: an epoch is the same
    whether or not the run was interrupted before it. (Persistent workers keep their own copy of the
    dataset, so with them the augmentation continues rather than restarts.) Under DDP Lightning
    replaces this sampler with a ``DistributedSampler``.

    Args:
        dataset: a sized dataset; if it has ``set_epoch`` it is told the epoch.
        seed: the seed.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        set_dataset_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_dataset_epoch):
            set_dataset_epoch(self.epoch)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        # A generator: the permutation is drawn at the first index, after Lightning's set_epoch, even
        # when the DataLoader iterator was created before it.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        yield from torch.randperm(len(self), generator=generator).tolist()


class BlurSequenceDataModule(LightningDataModule):
    """Data for training, evaluating and running deblurring and ordering models.

    Train, val and test come from one metadata file (each sample's ``partition``). Training items are
    random crops with paired augmentation; evaluation items are full resolution (centre-cropped to a
    multiple of ``eval_crop_multiple`` if that is above 1).

    Evaluation batch size: full-resolution images of different sizes cannot be stacked, so with
    ``eval_batch_size=None`` a split is evaluated with ``batch_size`` when all its blurry images have
    one size (read from file headers when the loader is built) and with 1 otherwise. An explicit
    ``eval_batch_size`` is used as given; a batch of mixed sizes then fails with a clear error.

    Args:
        root: dataset root folder (holding the metadata file).
        metadata: metadata file, relative to ``root`` or absolute.
        batch_size: training batch size.
        crop_size: training crop side or ``(height, width)``; ``None`` trains on full images.
        crop_multiple: round the training crop down to a multiple of this (20 for ``jin``).
        eval_crop_multiple: centre-crop evaluation images to a multiple of this.
        num_workers: DataLoader worker processes.
        persistent_workers: keep workers alive between epochs (only with ``num_workers > 0``).
        pin_memory: pin batches in page-locked memory (for GPU training).
        hflip: random left-right flips in training.
        vflip: random up-down flips in training.
        affine: small random affine jitter in training.
        color_jitter: colour jitter strength in training (0 = off).
        noise_std: maximum std of Gaussian noise added to training blurry inputs (0 = off).
        eval_batch_size: batch size of val/test loaders; ``None`` = automatic (see above).
        packed: read the packed store (``True``), image files (``False``), or the packed store when an
            up-to-date one exists for a split (``None``).
        packed_dir: packed store folder; ``<root>/packed`` by default.
        seed: seed of the datasets' generators (combined with the worker seed in workers).
        drop_last: drop the last incomplete training batch.

    Example:
        >>> dm = BlurSequenceDataModule("data/rb2v-street", batch_size=8, crop_size=256)  # doctest: +SKIP
        >>> batch = next(iter(dm.train_dataloader()))  # doctest: +SKIP
        >>> batch["sharp"].shape  # doctest: +SKIP
        torch.Size([8, 7, 3, 256, 256])
    """

    def __init__(
        self,
        root: str | Path | None = None,
        metadata: str = "metadata.json",
        batch_size: int = 8,
        crop_size: int | tuple[int, int] | None = 256,
        crop_multiple: int = 1,
        eval_crop_multiple: int = 1,
        num_workers: int = 0,
        persistent_workers: bool = False,
        pin_memory: bool = False,
        hflip: bool = True,
        vflip: bool = False,
        affine: bool = False,
        color_jitter: float = 0.0,
        noise_std: float = 0.0,
        eval_batch_size: int | None = None,
        packed: bool | None = None,
        packed_dir: str | Path | None = None,
        seed: int | None = None,
        drop_last: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.root = None if root is None else Path(root)
        self.metadata_file = metadata
        self.batch_size = int(batch_size)
        self.eval_batch_size = eval_batch_size
        self.num_workers = int(num_workers)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.pin_memory = bool(pin_memory)
        self.packed = packed
        self.packed_dir = None if packed_dir is None else Path(packed_dir)
        self.seed = seed
        self.drop_last = bool(drop_last)
        self.eval_crop_multiple = int(eval_crop_multiple)
        self.train_transform = PairedAugment(
            crop_size=crop_size,
            crop_multiple=crop_multiple,
            hflip=hflip,
            vflip=vflip,
            affine=affine,
            color_jitter=color_jitter,
            noise_std=noise_std,
        )
        self.eval_transform = CenterCropMultiple(self.eval_crop_multiple)
        self._meta: DatasetMetadata | None = None
        self._datasets: dict[str, Dataset] = {}

    # -- datasets ---------------------------------------------------------------------------------
    def _require_root(self) -> Path:
        if self.root is None:
            raise ValueError(
                "BlurSequenceDataModule: root is not set (the dataset folder with metadata.json)"
            )
        return self.root

    @property
    def metadata(self) -> DatasetMetadata:
        """The validated metadata (read once)."""
        if self._meta is None:
            root = self._require_root()
            if self.packed is True:  # the image files may be gone; the packed store has the pixels
                self._meta = read_metadata(resolve_metadata_path(root, self.metadata_file))
            else:
                self._meta = check_dataset(root, self.metadata_file)
        return self._meta

    @property
    def num_frames(self) -> int:
        """``T``, the number of sharp frames per sample (from the metadata)."""
        return self.metadata.frame_per_seq

    def _use_packed(self, split: str) -> Path | None:
        if self.packed is False:
            return None
        folder, reason = find_packed(self._require_root(), split, self.metadata_file, self.packed_dir)
        if folder is None and self.packed is True:
            raise FileNotFoundError(f"packed=True but {reason}")
        return folder

    def dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` (``train``, ``val`` or ``test``), built once."""
        if split in self._datasets:
            return self._datasets[split]
        transform = self.train_transform if split == "train" else self.eval_transform
        packed_folder = self._use_packed(split)
        ds: Dataset
        if packed_folder is not None:
            ds = PackedSequenceDataset(packed_folder, split, transform, seed=self.seed)
        else:
            ds = BlurSequenceDataset(self._require_root(), self.metadata, split, transform, seed=self.seed, validate=False)
        self._datasets[split] = ds
        return ds

    def setup(self, stage: str | None = None) -> None:
        """Build (and validate) the datasets a stage needs; empty splits fail in their loader."""
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for split in splits.get(stage or "", ("train", "val", "test")):
            if self.metadata.partition(split):
                self.dataset(split)

    def has_split(self, split: str) -> bool:
        """Whether ``split`` has samples (entries with that ``partition``)."""
        return bool(self.metadata.partition(split))

    # -- loaders ----------------------------------------------------------------------------------
    def _nonempty(self, split: str) -> Dataset:
        if not self.metadata.partition(split):
            raise ValueError(
                f"{self._require_root() / self.metadata_file}: no samples with partition {split!r}; "
                f'the {split} dataloader needs at least one (set "partition": "{split}" on some entries)'
            )
        return self.dataset(split)

    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool, drop_last: bool) -> DataLoader:
        # With a seed, the shuffle and the augmentation of an epoch depend on (seed, epoch) only.
        sampler = EpochShuffleSampler(ds, self.seed) if shuffle and self.seed is not None else None
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers,
            pin_memory=self.pin_memory,
            collate_fn=collate_sequences,
        )

    def resolved_eval_batch_size(self, split: str) -> int:
        """Batch size used for ``split`` (``val``/``test``); see the class docstring."""
        if self.eval_batch_size is not None:
            return int(self.eval_batch_size)
        ds: Any = self._nonempty(split)
        m = self.eval_crop_multiple
        sizes = {(h // m * m, w // m * m) for h, w in ds.image_sizes()}
        return self.batch_size if len(sizes) == 1 else 1

    def train_dataloader(self) -> DataLoader:
        """Shuffled random crops; ``drop_last`` as configured."""
        ds = self._nonempty("train")
        if self.drop_last and len(ds) < self.batch_size:  # type: ignore[arg-type]
            warnings.warn(
                f"train split has {len(ds)} samples < batch_size {self.batch_size}: "  # type: ignore[arg-type]
                "keeping the incomplete batch",
                stacklevel=2,
            )
            return self._loader(ds, self.batch_size, shuffle=True, drop_last=False)
        return self._loader(ds, self.batch_size, shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader:
        """Full-resolution validation samples in file order."""
        return self._loader(self._nonempty("val"), self.resolved_eval_batch_size("val"), False, False)

    def test_dataloader(self) -> DataLoader:
        """Full-resolution test samples in file order."""
        return self._loader(self._nonempty("test"), self.resolved_eval_batch_size("test"), False, False)

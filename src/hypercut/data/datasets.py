"""Datasets yielding the batch contract of ``docs/ARCHITECTURE.md``.

An item is a dict: ``blurry`` ``(3, H, W)`` float32, ``sharp`` ``(T, 3, H, W)`` float32 (absent for
prediction folders), ``id`` ``str`` and ``reversed`` ``bool`` (the frames were flipped relative to
disk by the sample's ``order``).

Randomness (``order: random`` and the augmentation) comes from one ``numpy.random.Generator`` per
dataset and process, created on first use. With a ``seed`` it is drawn from ``(seed, epoch)`` in the
main process and ``(seed, epoch, worker id)`` in a DataLoader worker, so an epoch's crops do not depend
on what ran before it (resuming at an epoch boundary continues exactly; ``set_epoch`` is called by
:class:`EpochShuffleSampler`). Without a seed it comes from torch's initial seed, in a worker from the
worker's torch seed, following ``seed_everything(..., workers=True)``. Nothing global is seeded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hypercut.data.io import IMAGE_SUFFIXES, image_size, list_images, read_image, read_image_raw, to_float
from hypercut.data.metadata import (
    DatasetMetadata,
    check_dataset,
    frame_key,
    read_metadata,
    resolve_metadata_path,
)

__all__ = ["BlurSequenceDataset", "ImageFolderDataset", "collate_sequences", "to_item"]

Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def to_item(
    blurry: np.ndarray, sharp: np.ndarray | None, sample_id: str, reversed_: bool | None
) -> dict[str, Any]:
    """Build a contract item from channel-last float32 arrays.

    Shape:
        ``blurry`` ``(H, W, 3)`` -> ``(3, H, W)``; ``sharp`` ``(T, H, W, 3)`` -> ``(T, 3, H, W)``.
    """
    item: dict[str, Any] = {
        "blurry": torch.from_numpy(np.ascontiguousarray(blurry.transpose(2, 0, 1), dtype=np.float32))
    }
    if sharp is not None:
        item["sharp"] = torch.from_numpy(np.ascontiguousarray(sharp.transpose(0, 3, 1, 2), dtype=np.float32))
    item["id"] = sample_id
    if reversed_ is not None:
        item["reversed"] = bool(reversed_)
    return item


def collate_sequences(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Collate contract items into a batch, with a clear error for mixed image sizes.

    Shape:
        ``blurry`` ``(B, 3, H, W)``, ``sharp`` ``(B, T, 3, H, W)``, ``id`` ``list[str]``,
        ``reversed`` ``(B,)`` bool.

    Raises:
        ValueError: items of different sizes (evaluate such data with batch size 1).
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    out: dict[str, Any] = {}
    for key in ("blurry", "sharp"):
        if key not in batch[0]:
            continue
        shapes = [tuple(item[key].shape) for item in batch]
        if len(set(shapes)) > 1:
            desc = ", ".join(f"{item['id']!r}: {'x'.join(map(str, s))}" for item, s in zip(batch, shapes))
            raise ValueError(
                f"cannot batch {key} tensors of different sizes ({desc}); "
                "use batch size 1 for data with mixed image sizes (eval_batch_size=1)"
            )
        out[key] = torch.stack([item[key] for item in batch])
    out["id"] = [item["id"] for item in batch]
    if "reversed" in batch[0]:
        out["reversed"] = torch.tensor([bool(item["reversed"]) for item in batch], dtype=torch.bool)
    return out


class _SeededDataset(Dataset):
    """Per-process ``numpy`` generator; see the module docstring."""

    seed: int | None = None
    epoch: int = 0
    _rng: np.random.Generator | None = None
    _rng_pid: int | None = None

    def generator(self) -> np.random.Generator:
        """This process's generator for this dataset (created on first use)."""
        pid = os.getpid()
        if self._rng is None or self._rng_pid != pid:
            info = torch.utils.data.get_worker_info()
            if self.seed is not None:
                entropy = [self.seed, self.epoch] + ([] if info is None else [info.id])
            elif info is None:
                entropy = [torch.initial_seed()]
            else:
                entropy = [0, info.seed]
            self._rng = np.random.default_rng(entropy)
            self._rng_pid = pid
        return self._rng

    def set_epoch(self, epoch: int) -> None:
        """Restart the randomness from ``(seed, epoch)`` (no effect on the draws without a seed)."""
        self.epoch = int(epoch)
        if self.seed is not None:
            self._rng = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_rng"] = None
        state["_rng_pid"] = None
        return state

    @staticmethod
    def _draw_reverse(order: str, rng: np.random.Generator) -> bool:
        if order == "reverse":
            return True
        if order == "random":
            return bool(rng.random() < 0.5)
        return False


class BlurSequenceDataset(_SeededDataset):
    """Blurry images and their sharp frame sequences, read from image files.

    Args:
        root: dataset root folder.
        metadata: metadata file relative to ``root`` (or absolute), or parsed metadata.
        split: partition to read (``train``, ``val``, ``test``), or ``None`` for all samples.
        transform: paired transform ``(blurry, sharp, rng) -> (blurry, sharp)`` on float32
            channel-last arrays, e.g. :class:`~hypercut.data.transforms.PairedAugment`.
        seed: seed of this dataset's generator (``order: random`` and augmentation).
        validate: check the metadata and that every file of ``split`` exists at construction.

    Raises:
        DatasetValidationError: at construction, listing every problem (when ``validate``).

    Example:
        >>> ds = BlurSequenceDataset("data/rb2v-street", split="test")  # doctest: +SKIP
        >>> item = ds[0]  # doctest: +SKIP
        >>> item["blurry"].shape, item["sharp"].shape  # doctest: +SKIP
        (torch.Size([3, 720, 1280]), torch.Size([7, 3, 720, 1280]))
    """

    def __init__(
        self,
        root: str | Path,
        metadata: str | Path | DatasetMetadata = "metadata.json",
        split: str | None = "train",
        transform: Transform | None = None,
        *,
        seed: int | None = None,
        validate: bool = True,
    ) -> None:
        self.root = Path(root)
        if validate:
            meta = check_dataset(self.root, metadata, partitions=split)
        elif isinstance(metadata, DatasetMetadata):
            meta = metadata
        else:
            meta = read_metadata(resolve_metadata_path(self.root, metadata))
        self.metadata = meta
        self.metadata_name = meta.source
        self.split = split
        indexed = meta.indexed(split)
        self.indices = [i for i, _ in indexed]
        self.samples = [s for _, s in indexed]
        self.num_frames = meta.frame_per_seq
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def image_sizes(self) -> list[tuple[int, int]]:
        """``(H, W)`` of every blurry image, from file headers."""
        return [image_size(self.root / s.blur_path) for s in self.samples]

    def _read_raw(self, index: int) -> list[np.ndarray]:
        """Blurry image then frames, as stored (uint8/uint16), with a size check naming both files."""
        s = self.samples[index]
        images = [read_image_raw(self.root / s.blur_path)]
        for k, p in enumerate(s.frame_paths, start=1):
            frame = read_image_raw(self.root / p)
            if frame.shape != images[0].shape:
                raise ValueError(
                    f"{self.metadata_name}: data[{self.indices[index]}].{frame_key(k)}: "
                    f"{self.root / p} is {frame.shape[0]}x{frame.shape[1]} but blur_path "
                    f"{self.root / s.blur_path} is {images[0].shape[0]}x{images[0].shape[1]}"
                )
            images.append(frame)
        return images

    def read_arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The stored (untransformed, unflipped) images of sample ``index``.

        Shape:
            ``blurry`` ``(H, W, 3)``, ``sharp`` ``(T, H, W, 3)``, float32 in [0, 1].

        Raises:
            ValueError: a frame's size differs from the blurry image's (both files named).
        """
        images = self._read_raw(index)
        return to_float(images[0]), np.stack([to_float(x) for x in images[1:]])

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index`` in the batch contract.

        With a crop-first transform (``crop_box``/``augment_crop``) only the crop is converted to
        float; the result is the same as transforming the full float images.

        Shape:
            ``blurry`` ``(3, H, W)``, ``sharp`` ``(T, 3, H, W)``.
        """
        s = self.samples[index]
        rng = self.generator()
        flip = self._draw_reverse(s.order, rng)
        images = self._read_raw(index)
        t = self.transform
        try:
            if t is not None and hasattr(t, "crop_box") and hasattr(t, "augment_crop"):
                top, left, ch, cw = t.crop_box(images[0].shape[0], images[0].shape[1], rng)
                crops = [to_float(x[top : top + ch, left : left + cw]) for x in images]
                blurry, sharp = t.augment_crop(crops[0], np.stack(crops[1:]), rng)
            else:
                blurry, sharp = to_float(images[0]), np.stack([to_float(x) for x in images[1:]])
                if t is not None:
                    blurry, sharp = t(blurry, sharp, rng)
        except ValueError as exc:
            raise ValueError(f"{self.root / s.blur_path}: {exc}") from exc
        if flip:
            sharp = sharp[::-1]
        return to_item(blurry, sharp, s.id, flip)

    def __repr__(self) -> str:
        return f"BlurSequenceDataset(root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"


class ImageFolderDataset(Dataset):
    """Blurry images of a folder, for prediction: items have ``blurry`` and ``id`` only.

    ``id`` is the file's path relative to the folder, without suffix (``sub/0001``).

    Args:
        folder: folder of images (PNG, JPEG, ...).
        crop_multiple: centre-crop each side to a multiple of this (1 = full resolution).
        recursive: also read images in sub-folders.

    Raises:
        FileNotFoundError: the folder does not exist or holds no image.
    """

    def __init__(self, folder: str | Path, crop_multiple: int = 1, recursive: bool = False) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"predict folder not found: {self.folder}")
        self.files = list_images(self.folder, recursive=recursive)
        if not self.files:
            raise FileNotFoundError(
                f"no images ({', '.join(IMAGE_SUFFIXES)}) in predict folder {self.folder}"
            )
        self.crop_multiple = int(crop_multiple)

    def __len__(self) -> int:
        return len(self.files)

    def image_sizes(self) -> list[tuple[int, int]]:
        """``(H, W)`` of every image, from file headers."""
        return [image_size(p) for p in self.files]

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index``: ``blurry`` ``(3, H, W)`` float32 and ``id``.

        Shape:
            ``blurry`` ``(3, H, W)``.
        """
        path = self.files[index]
        blurry = read_image(path)
        if self.crop_multiple > 1:
            m = self.crop_multiple
            h, w = blurry.shape[0] // m * m, blurry.shape[1] // m * m
            if h == 0 or w == 0:
                raise ValueError(
                    f"{path}: {blurry.shape[0]}x{blurry.shape[1]} is smaller than crop_multiple {m}"
                )
            top, left = (blurry.shape[0] - h) // 2, (blurry.shape[1] - w) // 2
            blurry = blurry[top : top + h, left : left + w]
        sample_id = path.relative_to(self.folder).with_suffix("").as_posix()
        return to_item(blurry, None, sample_id, None)

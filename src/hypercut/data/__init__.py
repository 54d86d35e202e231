"""Data: the on-disk format, datasets, paired augmentation, packed store, synthesis, video import.

Importing ``hypercut.data`` loads torch, numpy, OpenCV and Pillow; Lightning is loaded only when
:class:`BlurSequenceDataModule` is first used, and albumentations only when an augmentation needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hypercut.data.datasets import BlurSequenceDataset, ImageFolderDataset, collate_sequences
from hypercut.data.io import ImageReadError, image_size, list_images, read_image, read_image_raw, write_image
from hypercut.data.metadata import (
    ORDERS,
    PARTITIONS,
    DatasetMetadata,
    DatasetValidationError,
    SampleRecord,
    check_dataset,
    read_metadata,
    resolve_metadata_path,
    validate_dataset,
    write_metadata,
)
from hypercut.data.natural import (
    MotionRecipe,
    NaturalSceneSet,
    NaturalSceneStream,
    PhotoLibrary,
    natural_sample,
    write_natural_dataset,
)
from hypercut.data.packed import PackedSequenceDataset, find_packed, pack_dataset
from hypercut.data.synth import render_sample, render_subframes, synthesize_dataset, synthesize_sample
from hypercut.data.transforms import CenterCropMultiple, PairedAugment
from hypercut.data.video import dataset_from_video

if TYPE_CHECKING:
    from hypercut.data.datamodule import BlurSequenceDataModule
    from hypercut.data.natural_module import NaturalDataModule

__all__ = [
    "ORDERS",
    "PARTITIONS",
    "BlurSequenceDataModule",
    "BlurSequenceDataset",
    "CenterCropMultiple",
    "DatasetMetadata",
    "DatasetValidationError",
    "ImageFolderDataset",
    "ImageReadError",
    "MotionRecipe",
    "NaturalDataModule",
    "NaturalSceneSet",
    "NaturalSceneStream",
    "PackedSequenceDataset",
    "PairedAugment",
    "PhotoLibrary",
    "SampleRecord",
    "check_dataset",
    "collate_sequences",
    "dataset_from_video",
    "find_packed",
    "image_size",
    "list_images",
    "natural_sample",
    "pack_dataset",
    "read_image",
    "read_image_raw",
    "read_metadata",
    "render_sample",
    "render_subframes",
    "resolve_metadata_path",
    "synthesize_dataset",
    "synthesize_sample",
    "validate_dataset",
    "write_image",
    "write_metadata",
    "write_natural_dataset",
]


def __getattr__(name: str) -> Any:
    # Lightning takes seconds to import; only the DataModule needs it.
    if name == "BlurSequenceDataModule":
        from hypercut.data.datamodule import BlurSequenceDataModule

        return BlurSequenceDataModule
    if name == "NaturalDataModule":
        from hypercut.data.natural_module import NaturalDataModule

        return NaturalDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

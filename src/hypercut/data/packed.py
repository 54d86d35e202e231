"""Packed store: one memory-mapped array per split, for fast random crops.

``pack_dataset`` writes, per split, ``<split>.npy`` of shape ``(N, T + 1, H, W, 3)`` (the blurry image
first, then the T frames as stored on disk) in ``uint8``, or ``uint16`` when any source image of
the split is 16-bit, plus ``<split>.json``: ids, orders, the source metadata name and its SHA-256,
and the size and modification time of every source image. A split must have one image size
(evaluation sets of mixed sizes stay as image files). :class:`PackedSequenceDataset` slices the crop
straight out of the memory map, so a 256 crop of a 720p sample reads about 1.5 MB instead of decoding
eight PNGs.

A stale store is never read: opening one whose source images changed since packing (size or
modification time; images that are gone are not checked) raises :class:`StalePackedStoreError`, and
:func:`find_packed` reports a changed metadata file. Packing is safe against a second ``pack`` of the
same folder (a lock: the second one fails with "already packing") and against readers of the
previous store (each file is written under a unique temporary name, then renamed into place; a
failure deletes it).
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from hypercut.data._progress import progress
from hypercut.data.datasets import Transform, _SeededDataset, to_item
from hypercut.data.io import ImageReadError, read_header, read_image_raw, to_float
from hypercut.data.metadata import (
    PARTITIONS,
    SampleRecord,
    check_dataset,
    frame_key,
    metadata_digest,
    resolve_metadata_path,
)

__all__ = [
    "PACKED_FORMAT",
    "PackedSequenceDataset",
    "StalePackedStoreError",
    "find_packed",
    "pack_dataset",
    "read_packed_index",
]

PACKED_FORMAT = "hypercut-packed-v2"
"""Value of ``format`` in a packed split's index."""


class StalePackedStoreError(ValueError):
    """A packed split's source images changed since it was packed; the message says what to re-pack."""


@contextmanager
def _pack_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.pack.lock`` for the duration, or fail at once if another process holds it.

    Raises:
        BlockingIOError: another ``pack`` of ``out`` is running.
    """
    with open(out / ".pack.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BlockingIOError(
                f"{out}: already packing (another `hypercut-data pack` holds {out / '.pack.lock'}); "
                "wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a unique temporary file beside ``path``, then rename it to ``path``.

    The name is unique (a random suffix) and the file is created by ``write``, with the usual
    permissions (``tempfile.mkstemp`` would make it private to its owner).
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fingerprint(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def pack_dataset(
    root: str | Path,
    metadata: str | Path = "metadata.json",
    out: str | Path | None = None,
    splits: Iterable[str] | None = None,
    show_progress: bool = True,
) -> Path:
    """Pack a dataset's splits into memory-mapped arrays.

    Args:
        root: dataset root folder.
        metadata: metadata file relative to ``root`` (or absolute).
        out: output folder; ``<root>/packed`` by default.
        splits: partitions to pack; all non-empty ones by default.
        show_progress: show a progress bar.

    Returns:
        The output folder.

    Raises:
        DatasetValidationError: the dataset is invalid (image headers and sizes are checked).
        ValueError: the images of a split do not all have one size.
        ImageReadError: an image does not decode (sample, field and file named; no file is left).
        BlockingIOError: another ``pack`` of the same output folder is running.
    """
    root = Path(root)
    meta = check_dataset(root, metadata, partitions=splits, check="headers")
    out = root / "packed" if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    digest = metadata_digest(resolve_metadata_path(root, metadata))
    names = PARTITIONS if splits is None else tuple(splits)
    with _pack_lock(out):
        for split in names:
            indexed = meta.indexed(split)
            if not indexed:
                if splits is not None:
                    raise ValueError(f"{metadata}: no samples with partition {split!r} to pack")
                continue
            _pack_split(root, str(metadata), meta.name, meta.frame_per_seq, split, indexed, out, digest, show_progress)
    return out


def _pack_split(
    root: Path,
    metadata: str,
    name: str,
    t: int,
    split: str,
    indexed: list[tuple[int, SampleRecord]],
    out: Path,
    digest: str,
    show_progress: bool,
) -> None:
    """Write ``<split>.npy`` and ``<split>.json`` of one split into ``out`` (see :func:`pack_dataset`)."""
    sizes: dict[tuple[int, int], str] = {}
    depth = 8
    for _, s in indexed:
        for p in (s.blur_path, *s.frame_paths):
            header = read_header(root / p)
            sizes.setdefault((header.height, header.width), p)
            depth = max(depth, header.bit_depth)
    if len(sizes) > 1:
        listed = ", ".join(f"{h}x{w} (e.g. {p})" for (h, w), p in sizes.items())
        raise ValueError(
            f"cannot pack split {split!r} of {root}: its images have {len(sizes)} sizes: {listed}; "
            "a packed split needs one size (keep mixed-size splits as image files, packed=False)"
        )
    (h, w) = next(iter(sizes))
    dtype = np.uint16 if depth == 16 else np.uint8
    shape = (len(indexed), t + 1, h, w, 3)
    sources: list[list[Any]] = []

    def fill(tmp: Path) -> None:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        for n, (i, s) in enumerate(progress(indexed, len(indexed), f"packing {split}", show_progress)):
            for k, p in enumerate((s.blur_path, *s.frame_paths)):
                sources.append([p, *_fingerprint(root / p)])
                try:
                    raw = read_image_raw(root / p)
                except ImageReadError as exc:
                    key = "blur_path" if k == 0 else frame_key(k)
                    raise ImageReadError(f"cannot pack split {split!r}: {metadata}: data[{i}].{key}: {exc}") from exc
                if raw.dtype != dtype:  # an 8-bit file in a 16-bit split
                    raw = raw.astype(np.uint16) * 257
                array[n, k] = raw
        array.flush()
        del array

    _write_atomic(out / f"{split}.npy", fill)
    index = {
        "format": PACKED_FORMAT,
        "name": name,
        "split": split,
        "frame_per_seq": t,
        "shape": list(shape),
        "dtype": np.dtype(dtype).name,
        "source_metadata": metadata,
        "metadata_sha256": digest,
        "root": os.path.relpath(root.resolve(), out.resolve()),
        "sources": sources,
        "ids": [s.id for _, s in indexed],
        "orders": [s.order for _, s in indexed],
        "data_indices": [i for i, _ in indexed],
    }
    _write_atomic(out / f"{split}.json", lambda tmp: tmp.write_text(json.dumps(index) + "\n", encoding="utf-8"))


def check_fresh(packed_dir: str | Path, index: dict[str, Any]) -> None:
    """Check that the source images of a packed split did not change since packing.

    Each source image still present must have the size and modification time recorded at packing;
    images that are gone are not checked (the packed store holds their pixels).

    Raises:
        StalePackedStoreError: naming the first changed image and the command that re-packs.
    """
    folder = Path(packed_dir)
    root = (folder / index["root"]).resolve()
    for path, size, mtime in index["sources"]:
        try:
            now = _fingerprint(root / path)
        except FileNotFoundError:
            continue
        if now != (size, mtime):
            raise StalePackedStoreError(
                f"{folder / index['split']}.npy is stale: {root / path} changed since packing "
                f"(size {size} -> {now[0]} bytes, or its modification time); re-pack with "
                f"`hypercut-data pack {root}`"
            )


def read_packed_index(packed_dir: str | Path, split: str) -> dict[str, Any]:
    """The JSON index of a packed split.

    Raises:
        FileNotFoundError: the split was not packed.
        ValueError: the index is not a packed index.
    """
    path = Path(packed_dir) / f"{split}.json"
    if not path.is_file() or not (Path(packed_dir) / f"{split}.npy").is_file():
        raise FileNotFoundError(f"no packed split {split!r} in {packed_dir} (run `hypercut-data pack`)")
    index = json.loads(path.read_text(encoding="utf-8"))
    if index.get("format") != PACKED_FORMAT:
        raise ValueError(
            f"{path}: format: {index.get('format')!r} is not {PACKED_FORMAT!r} (packed by another "
            "version? re-pack with `hypercut-data pack`)"
        )
    return index


def find_packed(
    root: str | Path, split: str, metadata: str | Path = "metadata.json", packed_dir: str | Path | None = None
) -> tuple[Path | None, str]:
    """Locate an up-to-date packed split.

    Returns:
        ``(folder, "")`` when ``<packed_dir>/<split>.npy`` exists and was packed from the current
        metadata file and source images, else ``(None, reason)``.
    """
    folder = Path(root) / "packed" if packed_dir is None else Path(packed_dir)
    try:
        index = read_packed_index(folder, split)
        check_fresh(folder, index)
    except (FileNotFoundError, ValueError) as exc:
        return None, str(exc)
    meta_path = resolve_metadata_path(root, metadata)
    if not meta_path.is_file() or index.get("metadata_sha256") != metadata_digest(meta_path):
        return None, f"packed split {split!r} in {folder} is stale: {meta_path} changed since packing"
    return folder, ""


class PackedSequenceDataset(_SeededDataset):
    """A packed split, with the same items as :class:`~hypercut.data.BlurSequenceDataset`.

    With a transform that has ``crop_box`` (``PairedAugment``, ``CenterCropMultiple``) the crop is
    drawn first and only that window is read from the memory map; flips, jitter and noise then run
    on the crop. For the same seed it returns exactly the pixels the image-file dataset returns.

    Args:
        packed_dir: folder written by :func:`pack_dataset`.
        split: partition to read.
        transform: paired transform, as for ``BlurSequenceDataset``.
        seed: seed of this dataset's generator.

    Raises:
        StalePackedStoreError: a source image changed since packing.
    """

    def __init__(
        self,
        packed_dir: str | Path,
        split: str = "train",
        transform: Transform | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        self.packed_dir = Path(packed_dir)
        self.split = split
        self.index = read_packed_index(self.packed_dir, split)
        check_fresh(self.packed_dir, self.index)
        self.ids: list[str] = list(self.index["ids"])
        self.orders: list[str] = list(self.index["orders"])
        self.num_frames = int(self.index["frame_per_seq"])
        self.transform = transform
        self.seed = seed
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        """The memory map ``(N, T + 1, H, W, 3)``, opened lazily in each process."""
        if self._array is None:
            self._array = np.load(self.packed_dir / f"{self.split}.npy", mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_array"] = None  # never pickle (copy) the memory map into workers
        return state

    def __len__(self) -> int:
        return len(self.ids)

    def image_sizes(self) -> list[tuple[int, int]]:
        """``(H, W)`` of every sample (one size per packed split)."""
        _, _, h, w, _ = self.index["shape"]
        return [(h, w)] * len(self)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index`` in the batch contract.

        Shape:
            ``blurry`` ``(3, H, W)``, ``sharp`` ``(T, 3, H, W)``.
        """
        rng = self.generator()
        flip = self._draw_reverse(self.orders[index], rng)
        sample = self.array[index]
        t = self.transform
        if t is not None and hasattr(t, "crop_box") and hasattr(t, "augment_crop"):
            try:
                top, left, ch, cw = t.crop_box(sample.shape[1], sample.shape[2], rng)
            except ValueError as exc:
                raise ValueError(
                    f"{self.packed_dir / self.split}.npy: id {self.ids[index]!r}: {exc}"
                ) from exc
            window = to_float(np.asarray(sample[:, top : top + ch, left : left + cw]))
            blurry, sharp = t.augment_crop(window[0], window[1:], rng)
        else:
            window = to_float(np.asarray(sample))
            blurry, sharp = window[0], window[1:]
            if t is not None:
                blurry, sharp = t(blurry, sharp, rng)
        if flip:
            sharp = sharp[::-1]
        return to_item(blurry, sharp, self.ids[index], flip)

    def __repr__(self) -> str:
        return f"PackedSequenceDataset({str(self.packed_dir)!r}, split={self.split!r}, samples={len(self)})"

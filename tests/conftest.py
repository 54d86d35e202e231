"""Shared fixtures: a tiny dataset written in the real on-disk format (root + metadata.json)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def write_tiny_dataset(
    root: Path,
    num_samples: int = 6,
    num_frames: int = 7,
    size: tuple[int, int] = (32, 40),
    partitions: Sequence[str] | None = None,
    orders: Sequence[str] | None = None,
    seed: int = 0,
) -> Path:
    """Write a tiny dataset: a bright square moving over a gradient, blurry = mean of the frames.

    Partitions default to 2 train, 2 val, 2 test for 6 samples (train first, then val, then test in
    thirds). Written with Pillow only, independent of ``hypercut.data``. Returns ``root``.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    root.mkdir(parents=True, exist_ok=True)
    if partitions is None:
        third = max(num_samples // 3, 1)
        partitions = ["train"] * (num_samples - 2 * third) + ["val"] * third + ["test"] * third
    orders = orders or ["ignore"] * num_samples
    yy, xx = np.mgrid[0:h, 0:w]
    data = []
    for i in range(num_samples):
        base = rng.uniform(0.1, 0.5, 3)
        background = base[None, None, :] * (0.6 + 0.4 * (xx / w))[:, :, None] + 0.05 * (yy / h)[:, :, None]
        colour = rng.uniform(0.6, 1.0, 3)
        side = max(min(h, w) // 4, 2)
        x0, y0 = rng.integers(0, w - side - num_frames), rng.integers(0, h - side)
        frames = []
        for t in range(num_frames):
            img = background.copy()
            img[y0 : y0 + side, x0 + t : x0 + t + side] = colour
            frames.append(np.round(img * 255).astype(np.uint8))
        blurry = np.round(np.mean(frames, axis=0)).astype(np.uint8)
        sid = f"{i:05d}"
        entry = {"id": sid, "order": orders[i], "partition": partitions[i], "blur_path": f"{sid}/blur.png"}
        (root / sid / "sharp").mkdir(parents=True, exist_ok=True)
        Image.fromarray(blurry).save(root / entry["blur_path"])
        for t, frame in enumerate(frames, start=1):
            key = f"frame{t:03d}_path"
            entry[key] = f"{sid}/sharp/{t:03d}.png"
            Image.fromarray(frame).save(root / entry[key])
        data.append(entry)
    meta = {"name": "tiny", "frame_per_seq": num_frames, "data": data}
    (root / "metadata.json").write_text(json.dumps(meta, indent=1))
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """Root of a tiny dataset: 6 samples (2 train, 2 val, 2 test), T=7, 32x40 8-bit RGB PNGs."""
    return write_tiny_dataset(tmp_path / "tiny")


@pytest.fixture
def make_tiny_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory ``make_tiny_dataset(name="tiny2", **kwargs)`` for variants (see ``write_tiny_dataset``)."""

    def make(name: str = "tiny_variant", **kwargs: object) -> Path:
        return write_tiny_dataset(tmp_path / name, **kwargs)  # type: ignore[arg-type]

    return make

"""Data-loading throughput: one blurry image + 7 sharp frames, 1280x720 sources, 256x256 crops.

Compares, in one process (samples/s for one DataLoader worker):
  (a) reference: decode the full PNGs with Pillow, convert to float, then crop (the usual pattern);
  (b) ``BlurSequenceDataset`` with ``PairedAugment`` (OpenCV decode, crop before float conversion);
  (c) ``PackedSequenceDataset``: the crop is sliced straight out of the memory-mapped store.

Usage: ``python bench/data_loader.py [--samples 4] [--seconds 3] [--out bench/results/data_loader.json]``.
The packed store is read from the page cache here (it was just written); a cold read from disk costs
one ~1.5 MB strided read per sample on top.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hypercut.data import (  # noqa: E402
    BlurSequenceDataset,
    PackedSequenceDataset,
    PairedAugment,
    pack_dataset,
    read_metadata,
    synthesize_dataset,
)


def _rate(fn, n_items: int, seconds: float) -> tuple[float, int]:
    """Items per second of ``fn(i)``, run over indices until ``seconds`` have passed (at least one pass)."""
    fn(0)  # warm-up (imports, page cache, generator creation)
    count, start = 0, time.perf_counter()
    while True:
        fn(count % n_items)
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and count >= n_items:
            return count / elapsed, count


def reference_loader(root: Path, crop: int, rng: np.random.Generator):
    """The pattern of most restoration codebases: full Pillow decode to float, then crop."""
    meta = read_metadata(root / "metadata.json")

    def load(i: int) -> dict:
        s = meta.samples[i]
        images = [
            np.asarray(Image.open(root / p).convert("RGB"), dtype=np.float32) / 255.0
            for p in (s.blur_path, *s.frame_paths)
        ]
        h, w = images[0].shape[:2]
        top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        crops = [img[top : top + crop, left : left + crop] for img in images]
        return {
            "blurry": torch.from_numpy(np.ascontiguousarray(crops[0].transpose(2, 0, 1))),
            "sharp": torch.from_numpy(np.ascontiguousarray(np.stack(crops[1:]).transpose(0, 3, 1, 2))),
        }

    return load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4, help="samples in the temporary dataset")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timing per loader")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "data_loader.json"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="hypercut-bench-") as tmp:
        root = Path(tmp) / "data"
        t0 = time.perf_counter()
        synthesize_dataset(
            root,
            args.samples,
            num_frames=7,
            size=(720, 1280),
            subframes=3,
            splits=(1, 0, 0),
            show_progress=False,
        )
        t_synth = time.perf_counter() - t0
        t0 = time.perf_counter()
        packed_dir = pack_dataset(root, show_progress=False)
        t_pack = time.perf_counter() - t0
        png_bytes = sum(p.stat().st_size for p in root.rglob("*.png"))

        aug = PairedAugment(crop_size=args.crop, hflip=True)
        loaders = {
            "reference_pillow_full_decode": reference_loader(root, args.crop, np.random.default_rng(0)),
            "BlurSequenceDataset": BlurSequenceDataset(
                root, split="train", transform=aug, seed=0
            ).__getitem__,
            "PackedSequenceDataset": PackedSequenceDataset(
                packed_dir, "train", transform=aug, seed=0
            ).__getitem__,
        }
        shapes = {name: tuple(fn(0)["sharp"].shape) for name, fn in loaders.items()}
        results = {}
        for name, fn in loaders.items():
            rate, count = _rate(fn, args.samples, args.seconds)
            results[name] = {"samples_per_s": rate, "ms_per_sample": 1000 / rate, "reads": count}

    ref = results["reference_pillow_full_decode"]["samples_per_s"]
    print(f"1 blurry + 7 sharp frames, 720x1280 PNG sources, {args.crop}x{args.crop} crop, one process")
    print(f"{'loader':32s} {'samples/s':>10s} {'ms/sample':>10s} {'speed-up':>9s}")
    for name, r in results.items():
        print(
            f"{name:32s} {r['samples_per_s']:10.1f} {r['ms_per_sample']:10.2f} {r['samples_per_s'] / ref:8.1f}x"
        )
    report = {
        "benchmark": "data_loader",
        "setup": {
            "source_size": [720, 1280],
            "crop": args.crop,
            "num_frames": 7,
            "samples": args.samples,
            "png_mb_per_sample": png_bytes / args.samples / 1e6,
            "synth_s": t_synth,
            "pack_s": t_pack,
            "item_sharp_shape": shapes["BlurSequenceDataset"],
            "torch_threads": torch.get_num_threads(),
            "machine": platform.platform(),
            "python": platform.python_version(),
            "note": "single process = one DataLoader worker; packed store read from the page cache",
        },
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

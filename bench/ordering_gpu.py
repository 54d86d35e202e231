"""The ordering network on the library's own synthetic data, at GPU scale: does val Con@3 reach 0.95?

On the 2-core CPU the ordering target (val Con@3 >= 0.95 within 10 minutes) is not reached:
every formulation tried plateaus at 0.81-0.90 (docs/RESULTS.md). This script measures the one
untested route: the reference ``PairEncoder`` at full resolution with GPU-scale step counts, on
sequences from :func:`hypercut.data.synth.synthesize_sample` (the generator behind
``experiment=ordering_cpu``), antisymmetric scores, the HyperCUT ordering loss, Adamax.

It renders the sequences on every CPU core (Pillow and OpenCV needed), trains for ``--budget-s`` minus
the rendering time, and reports val Hit / Con@k of the untrained and the trained network (Hit is 1
by construction). Needs torch, torchmetrics, numpy, OpenCV and Pillow; no Hydra, no Lightning.

    python bench/ordering_gpu.py --budget-s 240 --out $OUT/ordering_gpu.json   # one GPU, <= 4 min
    python bench/ordering_gpu.py --quick                                        # CPU smoke, seconds
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_train as gt  # noqa: E402  (bench/gpu_train.py: ordering training and evaluation loops)

from hypercut.data.synth import synthesize_sample  # noqa: E402


def _render(job: tuple[int, int, int]) -> np.ndarray:
    """One sequence as uint8 ``(T, 3, H, W)`` from ``(seed, size, frames)``."""
    seed, size, frames = job
    sharp = synthesize_sample(seed, size=(size, size), num_frames=frames).sharp  # (T, H, W, 3) in [0, 1]
    return (np.clip(sharp, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(0, 3, 1, 2)


def render_sequences(first_seed: int, count: int, size: int, frames: int, workers: int) -> Tensor:
    """``count`` sequences with seeds ``first_seed ...`` as uint8 ``(count, T, 3, size, size)``."""
    jobs = [(first_seed + i, size, frames) for i in range(count)]
    if workers <= 1:
        rendered = [_render(job) for job in jobs]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            rendered = pool.map(_render, jobs, chunksize=max(1, count // (8 * workers)))
    return torch.from_numpy(np.stack(rendered))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny CPU smoke settings (seconds)")
    parser.add_argument("--budget-s", type=float, default=240.0, help="rendering + training + evaluation")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=7)
    parser.add_argument("--train-size", type=int, default=8000)
    parser.add_argument("--val-size", type=int, default=400)
    parser.add_argument("--encoder", choices=["reference", "small"], default="reference")
    parser.add_argument("--order-batch", type=int, default=32)
    parser.add_argument("--order-lr", type=float, default=5e-4)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default=None, help="default bf16 on GPU")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="rendering processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON results file")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in dict(train_size=32, val_size=16, budget_s=20.0, encoder="small", order_batch=4,
                               workers=1).items():
            if parser.get_default(key) == getattr(args, key):
                setattr(args, key, value)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    args.precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    torch.manual_seed(args.seed)
    start = time.perf_counter()

    train = {"sharp": render_sequences(args.seed, args.train_size, args.size, args.frames, args.workers)}
    val = {"sharp": render_sequences(1_000_000 + args.seed, args.val_size, args.size, args.frames, args.workers)}
    render_s = time.perf_counter() - start
    print(f"ordering_gpu: rendered {args.train_size} + {args.val_size} sequences at {args.size} px "
          f"in {render_s:.1f}s ({args.workers} workers)", flush=True)
    train, val = ({k: v.to(device) for k, v in d.items()} for d in (train, val))

    model = gt.build_ordering(args.encoder, args.seed).to(device)
    untrained = gt.evaluate_ordering(model, val, device, args.precision)
    seconds = max(5.0, args.budget_s - (time.perf_counter() - start) - 10.0)
    log: list[dict[str, Any]] = []
    info = gt.train_ordering(model, train, args, device, seconds, log)
    trained = gt.evaluate_ordering(model, val, device, args.precision)

    result = {
        "bench": "ordering_gpu",
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "render_seconds": round(render_s, 1),
        "train": info,
        "val_untrained": untrained,
        "val_trained": trained,
        "log": log,
    }
    keys = sorted(trained)
    md = "| val | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n"
    for name, row in (("untrained", untrained), (f"trained ({info['steps']} steps)", trained)):
        md += f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |\n"
    print(md, end="", flush=True)
    gt.save_outputs(result, md, args.out, None, indent=2)
    return result


if __name__ == "__main__":
    main()

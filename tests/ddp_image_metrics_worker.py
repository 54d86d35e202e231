"""Stand-alone check that ``VideoMetrics`` gives the same result on 2 gloo ranks as in one process.

Run by ``tests/test_image_metrics.py`` in a subprocess (so no process group leaks into the test
session): ``python tests/ddp_image_metrics_worker.py``. Exits 0 on success and prints the differences
otherwise.
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hypercut.metrics.image import VideoMetrics

NUM_FRAMES = 5
WORLD_SIZE = 2
# Uneven shards and several updates per rank: rank 0 gets samples 0..2 as [0:2], [2:3]; rank 1 gets 3..4.
SHARDS = {0: [(0, 2), (2, 3)], 1: [(3, 5)]}


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    target = torch.rand(5, NUM_FRAMES, 3, 16, 16, generator=g)
    pred = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    pred[1] = pred[1].flip(0)  # reversed predictions, chosen by the p-metrics
    pred[4] = pred[4].flip(0)
    return pred, target


def run_rank(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        pred, target = make_data()
        metric = VideoMetrics(NUM_FRAMES, data_range=1.0)
        for lo, hi in SHARDS[rank]:
            metric.update(pred[lo:hi], target[lo:hi])
        result = {k: v.item() for k, v in metric.compute().items()}
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def main() -> int:
    torch.set_num_threads(1)
    pred, target = make_data()
    single = VideoMetrics(NUM_FRAMES, data_range=1.0)
    single.update(pred, target)
    expected = {k: v.item() for k, v in single.compute().items()}
    assert expected["reversed_frac"] == 0.4, expected["reversed_frac"]

    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "pg_init")
        # fork (Linux) reuses the parent's imports: a fresh interpreter per rank costs seconds.
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        mp.start_processes(run_rank, args=(init_file, tmp), nprocs=WORLD_SIZE, join=True, start_method=method)
        results = [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True) for r in range(WORLD_SIZE)]

    bad = []
    for rank, result in enumerate(results):
        if result.keys() != expected.keys():
            bad.append(f"rank {rank}: keys differ")
            continue
        for key, value in expected.items():
            if abs(result[key] - value) > 1e-9 * max(1.0, abs(value)):
                bad.append(f"rank {rank}: {key} = {result[key]!r}, single process {value!r}")
    if bad:
        print("\n".join(bad))
        return 1
    print(f"ok: {len(expected)} values equal on {WORLD_SIZE} ranks")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Computes OrderingMetrics over fixed scores split across ranks of a gloo process group.

Usage: ``python tests/ddp_metrics_worker.py OUT.json [WORLD_SIZE]``. Rank r takes sequences
r, r + W, r + 2W, ... (uneven shards) in batches of 3; rank 0 writes ``compute()`` as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hypercut.metrics.ordering import OrderingMetrics

NUM_SEQUENCES = 13
NUM_PAIRS = 3


def make_scores() -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed ``(13, 3)`` scores with mixed signs, some ties at 0."""
    g = torch.Generator().manual_seed(1234)
    u = torch.randn(NUM_SEQUENCES, NUM_PAIRS, generator=g)
    v = torch.randn(NUM_SEQUENCES, NUM_PAIRS, generator=g)
    u[3, 1] = 0.0
    v[5, 0] = 0.0
    return u, v


def _worker(rank: int, world_size: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        u, v = make_scores()
        idx = torch.arange(rank, NUM_SEQUENCES, world_size)
        metric = OrderingMetrics(NUM_PAIRS)
        for i in range(0, len(idx), 3):
            metric.update(u[idx[i : i + 3]], v[idx[i : i + 3]])
        values = {k: float(v) for k, v in metric.compute().items()}
        if rank == 0:
            with open(out, "w") as f:
                json.dump(values, f)
    finally:
        dist.destroy_process_group()


def main() -> None:
    out = sys.argv[1]
    world_size = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        mp.spawn(_worker, args=(world_size, init_file, out), nprocs=world_size, join=True)


if __name__ == "__main__":
    main()

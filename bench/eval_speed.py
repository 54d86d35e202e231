"""Evaluation speed at full resolution: seconds per sample of ``hypercut-eval``, forward and metrics apart.

For each size (720x520 and 1280x720 by default) a small synthetic test split is written and the model
is saved as a weights file; then, per sample (medians over the samples of each repeat, then over the
repeats):

- ``forward_s``: ``net(blurry)`` under ``torch.inference_mode``;
- ``metrics_s``: ``VideoMetrics.update`` of the prediction plus that of the identity baseline (the
  blurry input repeated), as ``hypercut-eval`` does;
- ``metrics_reversed_s``: the same with the prediction reversed in time, the slowest case (the SSIM
  of the reversed direction is computed as well);
- ``total_s``: what one more sample adds to the wall time of :func:`hypercut.tasks.evaluate` (reading
  the images, forward, metrics, Lightning's loop): ``(t_N - t_1) / (N - 1)`` from a run on the ``N``
  samples and one on the first sample alone;
- ``evaluate_s``: ``t_N / N``, which also spreads the start-up (Trainer, model, tables) over the samples;
- ``peak_rss_mb``: the peak resident set size of the process during ``evaluate``.

``*_cpu_s`` are the same in process CPU seconds (all threads): on a machine shared with other jobs the
wall times grow with the load, the CPU times much less.

The model is ``MultiFrameUNet`` at its default width unless ``--net`` gives another spec (JSON, as in
a weights file). On a shared machine the figures move with the load: the load average is recorded.

    PYTHONPATH=src python bench/eval_speed.py --threads 2    # -> bench/results/eval_speed_cpu_t2.json
    PYTHONPATH=src python bench/eval_speed.py --quick --out /tmp/eval_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import PeakMemory, add_common_args, print_table, write_json

from hypercut import tasks
from hypercut.data import BlurSequenceDataModule
from hypercut.data.synth import synthesize_dataset
from hypercut.export import build_from_spec, load_pretrained, save_weights
from hypercut.metrics import VideoMetrics

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_NET = {"_target_": "hypercut.models.MultiFrameUNet", "num_frames": 7}


def _size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


class _Clock:
    """Wall and process CPU seconds of a block: ``with clock: ...`` appends to ``wall`` and ``cpu``."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __enter__(self) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def __exit__(self, *exc: object) -> None:
        self.wall.append(time.perf_counter() - self._start[0])
        self.cpu.append(time.process_time() - self._start[1])


def _per_sample(samples: list[dict[str, torch.Tensor]], net: torch.nn.Module, num_frames: int) -> dict[str, float]:
    """Median wall (and CPU) seconds per sample of the forward pass and of the metric updates."""
    forward, metrics, reversed_metrics = _Clock(), _Clock(), _Clock()
    model_metric, identity_metric = VideoMetrics(num_frames, 1.0), VideoMetrics(num_frames, 1.0)
    with torch.inference_mode():
        for batch in samples:
            blurry, sharp = batch["blurry"], batch["sharp"]
            with forward:
                pred = net(blurry).clamp(0, 1)
            identity = blurry.unsqueeze(1).expand_as(sharp)
            for preds, clock in ((pred, metrics), (pred.flip(1).contiguous(), reversed_metrics)):
                with clock:
                    model_metric.update(preds, sharp)
                    identity_metric.update(identity, sharp)
    return {
        "forward_s": statistics.median(forward.wall),
        "metrics_s": statistics.median(metrics.wall),
        "metrics_reversed_s": statistics.median(reversed_metrics.wall),
        "forward_cpu_s": statistics.median(forward.cpu),
        "metrics_cpu_s": statistics.median(metrics.cpu),
    }


def _evaluate_seconds(root: Path, weights: Path, out: Path) -> tuple[float, float, float]:
    """Wall and CPU seconds of ``tasks.evaluate`` on the test split of ``root``, and the peak RSS (MB)."""
    cfg = tasks.compose(
        "eval", [f"data.root={root}", f"weights={weights}", "accelerator=cpu", "num_frames=7"], output_dir=out
    )
    clock = _Clock()
    with PeakMemory(torch.device("cpu"), interval_s=0.02) as memory, clock:
        tasks.evaluate(cfg)
    return clock.wall[0], clock.cpu[0], memory.result()["peak_mb"]


def _evaluate_per_sample(roots: tuple[Path, Path], num_samples: int, weights: Path, out: Path) -> dict[str, float]:
    """``total_s`` (marginal), ``evaluate_s`` and ``peak_rss_mb`` from runs on N samples and on one."""
    wall_all, cpu_all, peak = _evaluate_seconds(roots[0], weights, out / "all")
    wall_one, cpu_one, _ = _evaluate_seconds(roots[1], weights, out / "one")
    return {
        "total_s": (wall_all - wall_one) / (num_samples - 1),
        "total_cpu_s": (cpu_all - cpu_one) / (num_samples - 1),
        "evaluate_s": wall_all / num_samples,
        "peak_rss_mb": peak,
    }


def measure(width: int, height: int, spec: dict[str, Any], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """All figures of one size: medians over ``args.repeats`` repeats."""
    # The same seed gives the same first sample: the one-sample split is the start of the other.
    roots = (work / f"data_{width}x{height}", work / f"data_{width}x{height}_one")
    for root, count in zip(roots, (args.samples, 1)):
        synthesize_dataset(
            root, num_samples=count, size=(height, width), splits=(0.0, 0.0, 1.0), seed=args.seed, show_progress=False
        )
    root = roots[0]
    torch.manual_seed(args.seed)
    weights = save_weights(build_from_spec(spec), work / "weights.pt", spec)
    net = load_pretrained(weights).eval()
    datamodule = BlurSequenceDataModule(root, eval_batch_size=1)
    datamodule.setup("test")
    samples = list(datamodule.test_dataloader())
    num_frames = samples[0]["sharp"].shape[1]
    repeats: list[dict[str, float]] = []
    for i in range(args.repeats):
        row = _per_sample(samples, net, num_frames)
        row.update(_evaluate_per_sample(roots, len(samples), weights, work / f"eval_{width}x{height}_{i}"))
        repeats.append(row)
        print(f"  {width}x{height} repeat {i + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    result: dict[str, Any] = {"size": f"{width}x{height}", "samples": len(samples)}
    result.update({key: statistics.median(r[key] for r in repeats) for key in repeats[0]})
    result["repeats"] = repeats
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--sizes", nargs="+", type=_size, default=None, help="WxH (default 720x520 1280x720)")
    parser.add_argument("--samples", type=int, default=None, help="test samples per size (default 4)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats, the median is reported (default 3)")
    parser.add_argument("--net", type=json.loads, default=None, help="model spec as JSON (default MultiFrameUNet)")
    args = parser.parse_args(argv)
    if args.device not in ("auto", "cpu"):
        raise SystemExit("eval_speed measures the CPU evaluation; --device cpu (or auto)")
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = args.sizes or ([(48, 40)] if args.quick else [(720, 520), (1280, 720)])
    args.samples = args.samples or (2 if args.quick else 4)
    if args.samples < 2:
        raise SystemExit("--samples must be at least 2 (the time per sample is a difference)")
    args.repeats = args.repeats or (1 if args.quick else 3)
    spec = args.net or (
        {**DEFAULT_NET, "base_channels": 8, "depth": 2, "max_channels": 16} if args.quick else DEFAULT_NET
    )
    threads = torch.get_num_threads()
    out = args.out or RESULTS / f"eval_speed_cpu_t{threads}.json"
    print(f"eval_speed: sizes={sizes} samples={args.samples} repeats={args.repeats} threads={threads}", flush=True)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="eval_speed_") as tmp:
        rows = [measure(w, h, spec, args, Path(tmp)) for w, h in sizes]
    payload = {
        "settings": {
            "net": spec,
            "threads": threads,
            "samples": args.samples,
            "repeats": args.repeats,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "results": rows,
    }
    columns = ["size", "forward_s", "metrics_s", "metrics_reversed_s", "total_s", "total_cpu_s", "peak_rss_mb"]
    print_table(rows, columns)
    write_json(out, payload)
    print(f"written to {out}")
    return payload


if __name__ == "__main__":
    main()

"""Validation pPSNR against wall-clock time for the old and the new deblurring recipe, in one run.

Both recipes train through the library (``hypercut.tasks.train``, the same path as ``hypercut-train``)
on the same natural-image data and are validated on the same held-out scenes; a
:class:`hypercut.lit.timeline.MetricTimeline` callback records each validation's time and metrics.

- ``old``: the previous default — MultiFrameUNet (3.5 M parameters, plain residual blocks), AdamW
  lr 5e-4, naive loss (the old default loss needs an ordering model, which would add its own time).
- ``new``: ``experiment=natural`` — MotionWarpNet with the best-direction loss, AdamW lr 2e-3.

Writes ``<out>.json`` (the curves, each recipe's best and the time the new recipe needed to reach the
old recipe's best) and ``<out>.png``, and prints a short table.

    python bench/time_to_quality.py --minutes 8 --out bench/results/time_to_quality
    python bench/time_to_quality.py --minutes 8 --threads 1 --parallel   # both at once, a core each
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RECIPES = {
    "old": ["experiment=natural", "model/net=multiframe_unet", "model/loss=naive", "model.optimizer.lr=5e-4"],
    "new": ["experiment=natural"],
}


def run_recipe(name: str, minutes: float, val_every: int, work: Path, threads: int) -> list[dict]:
    """Train recipe ``name`` for ``minutes`` and return its timeline."""
    import torch

    from hypercut import tasks

    torch.set_num_threads(threads)
    timeline = work / f"{name}_timeline.json"
    overrides = [
        *RECIPES[name],
        f"paths.root_dir={work}",
        "logger=csv",
        "test=false",
        "export_weights=false",
        "trainer.max_steps=100000",
        f"trainer.max_time={{minutes: {minutes}}}",
        f"trainer.val_check_interval={val_every}",
        "+trainer.enable_progress_bar=false",
        "data.num_val=32",
        "+callbacks.timeline._target_=hypercut.lit.timeline.MetricTimeline",
        f"+callbacks.timeline.path={timeline}",
    ]
    cfg = tasks.compose("train", overrides, output_dir=work / name)
    tasks.train(cfg)
    return json.loads(timeline.read_text())


def summarise(curves: dict[str, list[dict]]) -> dict:
    """Best pPSNR per recipe and the wall time at which the new recipe first reaches the old best."""
    best = {k: max(curves[k], key=lambda p: p["val/ppsnr"]) for k in curves}
    target = best["old"]["val/ppsnr"]
    reached = next((p for p in curves["new"] if p["val/ppsnr"] >= target), None)
    return {
        "identity_ppsnr": curves["old"][0].get("val/identity_ppsnr"),
        "best": {k: {"ppsnr": v["val/ppsnr"], "wall_s": v["wall_s"], "step": v["step"]} for k, v in best.items()},
        "new_reaches_old_best_s": None if reached is None else reached["wall_s"],
        "time_ratio": None if reached is None else round(reached["wall_s"] / best["old"]["wall_s"], 3),
    }


def plot(curves: dict[str, list[dict]], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        ax.plot([p["wall_s"] / 60 for p in points], [p["val/ppsnr"] for p in points], marker="o", label=name)
    if summary["identity_ppsnr"] is not None:
        ax.axhline(summary["identity_ppsnr"], color="grey", ls="--", label="identity (blurry input)")
    ax.set_xlabel("wall-clock minutes (2-core CPU)")
    ax.set_ylabel("val pPSNR (dB)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0, help="training time per recipe")
    parser.add_argument("--val-every", type=int, default=100, help="steps between validations")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per recipe")
    parser.add_argument("--parallel", action="store_true", help="train the recipes side by side (one process each)")
    parser.add_argument("--work", default="runs/time_to_quality", help="folder for the two runs")
    parser.add_argument("--out", default="bench/results/time_to_quality", help="output path without suffix")
    args = parser.parse_args()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    work = Path(args.work).resolve()
    if args.parallel:  # one process per recipe, side by side, each with --threads threads
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=len(RECIPES), mp_context=context) as pool:
            jobs = {name: pool.submit(run_recipe, name, args.minutes, args.val_every, work, args.threads)
                    for name in RECIPES}  # fmt: skip
            curves = {name: job.result() for name, job in jobs.items()}
    else:
        curves = {name: run_recipe(name, args.minutes, args.val_every, work, args.threads) for name in RECIPES}
    summary = summarise(curves)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"minutes_per_recipe": args.minutes, "threads": args.threads, "parallel": args.parallel,
              "recipes": RECIPES, **summary,
              "curves": curves}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    plot(curves, summary, out.with_suffix(".png"))
    print(f"| recipe | best val pPSNR | at (s) | step |  (identity {summary['identity_ppsnr']:.2f} dB)")
    print("|---|---|---|---|")
    for name, b in summary["best"].items():
        print(f"| {name} | {b['ppsnr']:.2f} | {b['wall_s']:.0f} | {b['step']} |")
    print(f"new reaches old best after {summary['new_reaches_old_best_s']} s (ratio {summary['time_ratio']})")


if __name__ == "__main__":
    main()

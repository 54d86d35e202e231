"""Validation pPSNR against wall-clock time for the old and the new deblurring recipe, in one run.

Every recipe trains through the library (``hypercut.tasks.train``, the same path as ``hypercut-train``)
on the same natural-image data and is validated on the same held-out scenes; a
:class:`hypercut.lit.timeline.MetricTimeline` callback records each validation's time and metrics.

- ``old``: the previous default deblurring recipe, ``hypercut-train``'s model defaults —
  MultiFrameUNet (3.5 M parameters, plain residual blocks), the HyperCUT loss with a frozen ordering
  model (the shipped ``ordering-default``, so its training time is not counted), AdamW lr 5e-4.
- ``old_given_order``: the same backbone and learning rate with the naive loss on frames stored in
  the camera's direction (``data.motion.order=camera``): the old backbone handed the true order for
  free, which the old recipe never had. A reference, not the target.
- ``new``: ``experiment=natural`` — MotionWarpNet with the best-direction loss, AdamW lr 2e-3.

Writes ``<out>.json`` (the curves, each recipe's best and the time the new recipe needed to reach
each other recipe's best) and ``<out>.png``, and prints a short table.

    python bench/time_to_quality.py --minutes 8 --out bench/results/time_to_quality
    python bench/time_to_quality.py --minutes 8 --threads 1 --parallel   # all at once, a process each
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

_OLD_NET = ["experiment=natural", "model/net=multiframe_unet", "model.optimizer.lr=5e-4"]
RECIPES = {
    "old": [*_OLD_NET, "model/loss=hypercut", "ordering_weights=ordering-default"],
    "old_given_order": [*_OLD_NET, "model/loss=naive", "+data.motion.order=camera"],
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
    """Best pPSNR per recipe and, for every other recipe, when the new one first reaches its best.

    ``time_ratio`` is that time over the time the other recipe took to its best; the target is
    ``reaches["old"]["time_ratio"] <= 0.2``.
    """
    best = {k: max(curves[k], key=lambda p: p["val/ppsnr"]) for k in curves}
    reaches = {}
    for name in curves:
        if name == "new":
            continue
        hit = next((p for p in curves["new"] if p["val/ppsnr"] >= best[name]["val/ppsnr"]), None)
        reaches[name] = {
            "wall_s": None if hit is None else hit["wall_s"],
            "time_ratio": None if hit is None else round(hit["wall_s"] / best[name]["wall_s"], 3),
        }
    return {
        "identity_ppsnr": curves["new"][0].get("val/identity_ppsnr"),
        "best": {k: {"ppsnr": v["val/ppsnr"], "wall_s": v["wall_s"], "step": v["step"]} for k, v in best.items()},
        "new_reaches": reaches,
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
    for name, hit in summary["new_reaches"].items():
        print(f"new reaches {name}'s best after {hit['wall_s']} s (time ratio {hit['time_ratio']}; target <= 0.2 for old)")


if __name__ == "__main__":
    main()

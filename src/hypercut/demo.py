"""The main job (`make train`): the whole HyperCUT path on an embedded default, no downloads.

render held-out camera-pan scenes from bundled photographs -> train the ordering net -> label orders
-> fine-tune the shipped MotionWarpNet with the HyperCUT loss on such scenes rendered on the fly ->
evaluate on the held-out test photos -> write frames, a GIF, an MP4 and a per-frame results table.
Every stage uses ``data=natural_camera`` (camera pans of natural photographs). Each stage is a
:mod:`hypercut.tasks` function on a config composed from ``conf/``; the overrides used are printed
so any stage can be re-run by hand with ``hypercut-*``.

Run ``python -m hypercut.demo --out runs/demo`` (``--quick`` for a seconds-long smoke run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hydra.utils import instantiate

from hypercut import tasks

# Sizes chosen so the whole job takes at most 10 minutes on a 2-core CPU.
FULL = {
    "num_samples": 96,
    "size": 128,
    "ordering_steps": 200,
    "deblur_steps": 600,
    "batch_size": 8,
    "crop_size": 64,
}
# The ordering stage's motion encoder needs at least 64 px (three scales of the 2x pooled pair).
QUICK = {"num_samples": 8, "size": 64, "ordering_steps": 4, "deblur_steps": 4, "batch_size": 2, "crop_size": 64}


def run(out: str | Path, quick: bool = False) -> dict[str, object]:
    """Run every stage into ``out``; returns the paths written and the test metrics."""
    settings = QUICK if quick else FULL
    out = Path(out).resolve()
    data_root = out / "data"
    timings: dict[str, float] = {}
    common = [
        f"paths.root_dir={out}",
        f"data.crop_size={settings['crop_size']}",
        f"data.batch_size={settings['batch_size']}",
        "logger=csv",
    ]
    if quick:
        common += ["data.num_val=2", "data.num_test=2", "data.eval_size=64", "data.sources=[skimage]"]

    def stage(name: str) -> None:
        timings[name] = time.perf_counter()
        print(f"\n=== {name} ===", flush=True)

    ordering_dir = out / "ordering"
    ordering_weights = ordering_dir / "weights.pt"
    deblur_dir = out / "deblur"
    deblur_cfg = tasks.compose(
        "train",
        [
            *common,
            "experiment=demo_deblur",
            f"ordering_weights={ordering_weights}",
            f"trainer.max_steps={settings['deblur_steps']}",
        ]
        + (["trainer.val_check_interval=2"] if quick else []),
        output_dir=deblur_dir,
    )

    stage("render held-out scenes")
    from hypercut.data import write_natural_dataset

    # The photographs and the motion of the deblurring stage's data, so test scenes match training's.
    scenes = instantiate(deblur_cfg.data)
    write_natural_dataset(
        data_root,
        num_samples=settings["num_samples"],
        size=(settings["size"], settings["size"]),
        splits=(0.5, 0.0, 0.5),
        motion=scenes.motion,
        library=scenes.library,
        seed=1,
    )

    stage("train ordering net")
    cfg = tasks.compose(
        "train",
        [*common, "experiment=demo_ordering", f"trainer.max_steps={settings['ordering_steps']}"]
        + (["trainer.val_check_interval=2"] if quick else []),
        output_dir=ordering_dir,
    )
    tasks.train(cfg)

    stage("label orders")
    cfg = tasks.compose(
        "label_order",
        # A rerun into the same folder replaces the earlier run's labels and videos.
        [f"data.root={data_root}", f"ordering_weights={ordering_weights}", "overwrite=true"],
        output_dir=out / "label_order",
    )
    label_stats = tasks.label_order(cfg)

    stage("fine-tune the deblurring net (shipped MotionWarpNet, HyperCUT loss)")
    tasks.train(deblur_cfg)

    stage("evaluate")
    cfg = tasks.compose(
        "eval",
        [
            f"data.root={data_root}",
            f"weights={deblur_dir / 'weights.pt'}",
            f"ordering_weights={ordering_weights}",
        ],
        output_dir=out / "eval",
    )
    results = tasks.evaluate(cfg)

    stage("infer on held-out samples")
    from hypercut.data import read_metadata

    held_out = [data_root / s.blur_path for _, s in read_metadata(data_root / "metadata.json").indexed("test")[:4]]
    cfg = tasks.compose(
        "infer",
        [f"weights={deblur_dir / 'weights.pt'}", "inputs=[" + ",".join(f"'{p}'" for p in held_out) + "]", "overwrite=true"],
        output_dir=out / "videos",
    )
    tasks.infer(cfg)

    timings["end"] = time.perf_counter()
    names = list(timings)
    durations = {n: round(timings[m] - timings[n], 1) for n, m in zip(names, names[1:])}
    summary: dict[str, object] = {
        "out": str(out),
        "ordering_weights": str(ordering_weights),
        "deblur_weights": str(deblur_dir / "weights.pt"),
        "label_order": label_stats,
        "results_table": str(out / "eval" / "results.md"),
        "videos": str(out / "videos"),
        "seconds": durations,
        "test": {k: v for k, v in results.items() if not k.split("/")[-1].startswith(("psnr_f", "ssim_f"))},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n" + (out / "eval" / "results.md").read_text())
    print(f"Stage times (s): {durations}")
    print(f"Everything is under {out}:")
    for key in ("ordering_weights", "deblur_weights", "results_table", "videos"):
        print(f"  {key:17s} {summary[key]}")
    print(f"  {'summary':17s} {out / 'summary.json'}")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke run of every stage")
    args = parser.parse_args(argv)
    run(args.out, quick=args.quick)


if __name__ == "__main__":
    main()

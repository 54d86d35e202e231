"""Command-line entry points: thin argparse layers over the library's functions.

Each ``*_main(argv=None) -> int`` parses ``argv`` (``sys.argv[1:]`` by default) and returns an exit
status; heavy imports happen inside the functions so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["data_main", "eval_main", "export_main", "infer_main", "label_order_main", "train_main"]


def _fractions(text: str) -> tuple[float, float, float]:
    parts = [float(p) for p in text.replace(",", " ").split()]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three fractions train,val,test, got {text!r}")
    return parts[0], parts[1], parts[2]


def _gamma(text: str) -> float | None:
    return None if text.lower() in ("none", "1", "1.0", "off") else float(text)


def _data_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hypercut-data",
        description="Build, check and pack blur-to-video datasets (root + metadata.json).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a procedural synthetic dataset")
    p.add_argument("out", help="output folder")
    p.add_argument("--num-samples", type=int, default=200)
    p.add_argument("--num-frames", type=int, default=7, help="sharp frames per sample (T)")
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subframes", type=int, default=5, help="sub-frames per sharp frame (odd)")
    p.add_argument(
        "--gamma", type=_gamma, default=2.2, help="display gamma for linear-light averaging, or none"
    )
    p.add_argument("--splits", type=_fractions, default=(0.8, 0.1, 0.1), help="train,val,test fractions")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8)
    p.add_argument("--name", default="synthetic")
    p.add_argument("--workers", type=int, default=1, help="parallel rendering processes")

    p = sub.add_parser("natural", help="write scenes composed from bundled photographs (split by photo)")
    p.add_argument("out", help="output folder")
    p.add_argument("--num-samples", type=int, default=200)
    p.add_argument("--num-frames", type=int, default=7, help="sharp frames per sample (T)")
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subframes", type=int, default=5, help="sub-frames per sharp frame (odd)")
    p.add_argument("--splits", type=_fractions, default=(0.8, 0.1, 0.1), help="train,val,test fractions")
    p.add_argument("--sources", nargs="+", default=["skimage", "opencv-doc"], choices=("skimage", "opencv-doc"))
    p.add_argument("--order", choices=("camera", "random"), default="camera", help="frame order convention")
    p.add_argument("--name", default="natural")

    p = sub.add_parser("from-video", help="average windows of a high-frame-rate video into blurry images")
    p.add_argument("video", help="video file or folder of frames")
    p.add_argument("out", help="output folder")
    p.add_argument("--num-frames", type=int, default=7)
    p.add_argument("--subframes", type=int, default=1, help="source frames per sharp frame (window = T * m)")
    p.add_argument("--window", type=int, default=None, help="frames per blurry image (overrides --subframes)")
    p.add_argument("--stride", type=int, default=None, help="frames between window starts (default: window)")
    p.add_argument("--gamma", type=_gamma, default=2.2)
    p.add_argument("--splits", type=_fractions, default=(0.8, 0.1, 0.1))
    p.add_argument("--gap", type=int, default=0, help="frames dropped between partitions")
    p.add_argument("--name", default=None)

    p = sub.add_parser(
        "validate",
        help="report every problem of a dataset (paths, files, image headers and sizes); exit 1 if any",
    )
    p.add_argument("root")
    p.add_argument("--metadata", default="metadata.json")
    p.add_argument("--full", action="store_true", help="also decode every image (finds corrupt pixel data)")

    p = sub.add_parser("pack", help="write the memory-mapped packed store")
    p.add_argument("root")
    p.add_argument("--metadata", default="metadata.json")
    p.add_argument("--out", default=None, help="output folder (default: ROOT/packed)")
    p.add_argument("--splits", nargs="+", default=None, choices=("train", "val", "test"))

    for action in sub.choices.values():
        if action.prog.split()[-1] in ("synth", "natural", "from-video", "pack"):
            action.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def data_main(argv: Sequence[str] | None = None) -> int:
    """``hypercut-data synth|natural|from-video|validate|pack``.

    Returns:
        0 on success; 1 when ``validate`` finds problems or a command fails on bad input.
    """
    args = _data_parser().parse_args(argv)
    from hypercut.data.metadata import DatasetValidationError

    start = time.perf_counter()
    try:
        if args.command == "synth":
            from hypercut.data.synth import synthesize_dataset

            path = synthesize_dataset(
                args.out,
                args.num_samples,
                num_frames=args.num_frames,
                size=tuple(args.size),
                seed=args.seed,
                subframes=args.subframes,
                gamma=args.gamma,
                splits=args.splits,
                name=args.name,
                bit_depth=args.bit_depth,
                workers=args.workers,
                show_progress=not args.quiet,
            )
            print(f"wrote {args.num_samples} samples to {path} in {time.perf_counter() - start:.1f} s")
        elif args.command == "natural":
            from hypercut.data.natural import MotionRecipe, PhotoLibrary, write_natural_dataset

            path = write_natural_dataset(
                args.out,
                args.num_samples,
                num_frames=args.num_frames,
                size=tuple(args.size),
                seed=args.seed,
                subframes=args.subframes,
                splits=args.splits,
                motion=MotionRecipe(order=args.order),
                library=PhotoLibrary.from_sources(args.sources),
                name=args.name,
                show_progress=not args.quiet,
            )
            print(f"wrote {args.num_samples} samples to {path} in {time.perf_counter() - start:.1f} s")
        elif args.command == "from-video":
            from hypercut.data.video import dataset_from_video

            path = dataset_from_video(
                args.video,
                args.out,
                num_frames=args.num_frames,
                subframes=args.subframes,
                window=args.window,
                stride=args.stride,
                gamma=args.gamma,
                splits=args.splits,
                gap=args.gap,
                name=args.name,
                show_progress=not args.quiet,
            )
            print(f"wrote {path} in {time.perf_counter() - start:.1f} s")
        elif args.command == "validate":
            from hypercut.data.metadata import validate_dataset

            problems = validate_dataset(args.root, args.metadata, check="full" if args.full else "headers")
            for line in problems:
                print(line)
            if problems:
                print(f"{len(problems)} problem(s) in {args.root}", file=sys.stderr)
                return 1
            print(f"{args.root}: OK")
        elif args.command == "pack":
            from hypercut.data.packed import pack_dataset

            out = pack_dataset(
                args.root, args.metadata, out=args.out, splits=args.splits, show_progress=not args.quiet
            )
            print(f"packed {args.root} into {out} in {time.perf_counter() - start:.1f} s")
    except (DatasetValidationError, ValueError, OSError) as exc:  # OSError: unreadable image, busy store
        print(f"hypercut-data {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


# Hydra entry points: each composes conf/<name>.yaml (shipped in the package; add your own configs with
# --config-dir) and calls the function of the same name in hypercut.tasks.
def _hydra_app(config_name: str, job: Callable[[Any], Any]) -> Callable[[], Any]:
    import hydra

    return hydra.main(version_base="1.3", config_path="conf", config_name=config_name)(job)


def _task(name: str, lightning: bool = False) -> Callable[[Any], Any]:
    """The job ``hypercut.tasks.<name>`` (imported when the job runs, so ``--help`` stays fast).

    Its return value is Hydra's: ``train`` returns the metric the Optuna sweeper optimises. A config
    mistake (a ``???`` value left unset, a :class:`hypercut.tasks.ConfigError`, a file that is not
    there) is printed as one line and exits with status 2; a job that fails leaves no run folder
    holding only Hydra's files. A job that uses Lightning (``lightning=True``) runs with
    :func:`hypercut.tasks.quiet_lightning`.
    """

    def job(cfg: Any) -> Any:
        from omegaconf.errors import MissingMandatoryValue

        from hypercut import tasks

        try:
            with tasks.quiet_lightning() if lightning else contextlib.nullcontext():
                return getattr(tasks, name)(cfg)
        except (tasks.ConfigError, MissingMandatoryValue, FileNotFoundError) as exc:
            _remove_bare_run_folder(cfg)
            message = str(exc)
            if isinstance(exc, MissingMandatoryValue):
                message = f"missing value for {exc.full_key}: add {exc.full_key}=..."
            print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
            sys.exit(2)
        except BaseException:
            _remove_bare_run_folder(cfg)
            raise

    return job


def _remove_bare_run_folder(cfg: Any) -> None:
    """Delete the job's run folder if it holds nothing but Hydra's ``.hydra/`` and the job's log.

    The folders above it that this leaves empty (a sweep folder with only Hydra's ``multirun.yaml``
    counts as empty) go too, up to ``paths.log_dir`` (kept).
    """
    import shutil

    from hydra.core.hydra_config import HydraConfig

    folder = Path(HydraConfig.get().runtime.output_dir).resolve()
    if not folder.is_dir() or any(p.name != ".hydra" and p.suffix != ".log" for p in folder.iterdir()):
        return
    shutil.rmtree(folder)
    log_dir = Path(cfg.paths.log_dir).resolve()
    for parent in folder.parents:
        if parent == log_dir or not parent.is_relative_to(log_dir):
            break
        if any(p.name != "multirun.yaml" for p in parent.iterdir()):
            break
        shutil.rmtree(parent)


def _infer(cfg: Any) -> None:
    report = _task("infer")(cfg)
    if report.failed:  # every input was tried; the failures are listed above
        sys.exit(1)


def train_main() -> None:
    """``hypercut-train``: train the deblurring net (default) or the ordering net (experiment=ordering)."""
    _hydra_app("train", _task("train", lightning=True))()


def eval_main() -> None:
    """``hypercut-eval``: per-frame PSNR/SSIM/pPSNR/pSSIM table of a weights file on a dataset split."""
    _hydra_app("eval", _task("evaluate", lightning=True))()


def label_order_main() -> None:
    """``hypercut-label-order``: write a new metadata file with each sample's order set by an ordering net."""
    _hydra_app("label_order", _task("label_order"))()


def infer_main() -> None:
    """``hypercut-infer``: images or folders -> per input T PNG frames, a GIF and an MP4."""
    _hydra_app("infer", _infer)()


def export_main() -> None:
    """``hypercut-export``: a Lightning checkpoint -> a self-describing weights-only file."""
    _hydra_app("export", _task("export"))()

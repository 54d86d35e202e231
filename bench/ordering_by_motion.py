"""Where an ordering model is inconsistent: Con@k by camera speed and by number of moving layers.

Scenes are drawn as ``data=natural`` draws them (the bundled photographs of one split, the default
motion recipe) and rendered without the sensor noise (the ordering model sees sharp frames only); the
model scores each sequence's symmetric pairs, and Con@k is reported per bin of the background's
displacement over the exposure (at the image centre, in pixels) and per number of foreground layers.
Con@k does not depend on the order in which a sequence is stored (reversing it negates every score).
It also reports how far the side an outer pair falls on (the canonical order a HyperCUT loss trains
towards) is a function of the camera's heading, which a deblurring net can read off the blur.

    python bench/ordering_by_motion.py --weights ordering-default --out bench/results/ordering_by_motion.json
    python bench/ordering_by_motion.py --weights runs/study/ordering/weights.pt \
        --motion '{"camera": [2, 10], "camera_rotation": 0, "camera_zoom": 0, "objects": [0, 0]}'
    python bench/ordering_by_motion.py --quick
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch
from common import add_common_args, print_table, write_json

from hypercut.data.natural import MotionRecipe, PhotoLibrary, camera_motion, natural_scene
from hypercut.data.synth import render_sample
from hypercut.export import load_pretrained
from hypercut.metrics.ordering import OrderingMetrics

SPEED_BINS = ((0.0, 3.0), (3.0, 6.0), (6.0, 10.0), (10.0, math.inf))


def draw(
    photos: list[np.ndarray], num: int, size: int, seed: int, motion: MotionRecipe
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``num`` sharp sequences ``(num, 7, 3, size, size)`` with their camera speeds, headings (radians,
    of the background's displacement from the first to the last frame), layer counts and the
    background's displacement ``(num, 3, 2)`` across each symmetric pair (outermost first)."""
    sequences, speeds, headings, layers, pairs = [], [], [], [], []
    for i in range(num):
        rng = np.random.default_rng([seed, i])
        scene = natural_scene(rng, photos, (size, size), 35, motion, 2.2)
        sharp = render_sample(scene, num_frames=7).sharp  # (T, H, W, 3)
        sequences.append(torch.from_numpy(np.ascontiguousarray(sharp)).permute(0, 3, 1, 2))
        dx, dy = camera_motion(scene)
        speeds.append(math.hypot(dx, dy))
        headings.append(math.atan2(dy, dx))
        layers.append(len(scene.objects))
        centre = np.array([(size - 1) / 2, (size - 1) / 2, 1.0])
        source = (scene.background.matrices @ centre).reshape(7, 5, 2).mean(1)  # (T, 2) per frame
        pairs.append(np.stack([source[k] - source[6 - k] for k in range(3)]))
    return torch.stack(sequences), np.array(speeds), np.array(headings), np.array(layers), np.array(pairs)


def motion_ceiling(pairs: np.ndarray, directions: int = 180) -> float:
    """Con@K of the best scorer that sees only the true motion: ``u_k = n . d_k`` for one unit vector
    ``n`` (the form whose side a deblurring net can read off the blur), best over ``directions``
    headings of ``n``. Hand shake turns the small inner pairs of slow pans, so this is below 1.

    Shape:
        - pairs: ``(N, K, 2)``, the displacement ``d_k`` across each symmetric pair.
    """
    best = 0.0
    for theta in np.linspace(0.0, math.pi, directions, endpoint=False):
        side = np.sign(pairs @ np.array([math.cos(theta), math.sin(theta)]))
        best = max(best, float((side == side[:, :1]).all(axis=1).mean()))
    return best


def heading_predictability(positive: np.ndarray, headings: np.ndarray, bins: int = 12) -> float:
    """How far the canonical side (``u_0 > 0``) is a function of the motion's heading.

    Per heading bin (``bins`` equal sectors), the share of the majority side; the mean over scenes.
    1 when the side is fixed by the heading (a deblurring net can read it off the blur's axis and a
    fixed convention), 0.5 when it is a coin toss at every heading.
    """
    index = ((headings + math.pi) / (2 * math.pi) * bins).astype(int) % bins
    majority = 0
    for b in range(bins):
        side = positive[index == b]
        majority += max(int(side.sum()), int((~side).sum()))
    return majority / len(positive)


def con_rows(u: torch.Tensor, v: torch.Tensor, masks: dict[str, np.ndarray]) -> list[dict]:
    """One row per mask: its size and Con@2 .. Con@K."""
    rows = []
    for name, mask in masks.items():
        keep = torch.from_numpy(mask)
        row: dict = {"subset": name, "n": int(mask.sum())}
        if row["n"]:
            metric = OrderingMetrics(num_pairs=u.shape[1])
            metric.update(u[keep], v[keep])
            row.update({k: float(x) for k, x in metric.compute().items() if k.startswith("con")})
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser)
    parser.add_argument("--weights", default="ordering-default", help="ordering weights file or zoo name")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--num", type=int, default=512, help="number of scenes")
    parser.add_argument("--size", type=int, default=64, help="scene side in pixels")
    parser.add_argument("--motion", default="{}", help='MotionRecipe fields as JSON, e.g. \'{"objects": [0, 0]}\'')
    args = parser.parse_args()
    if args.quick:
        args.num, args.size = 16, 32
    if args.threads:
        torch.set_num_threads(args.threads)

    photos = PhotoLibrary.from_sources(["skimage", "opencv-doc"], []).images(args.split)
    motion = MotionRecipe(**json.loads(args.motion))
    sharp, speeds, headings, layers, pairs = draw(photos, args.num, args.size, args.seed, motion)
    model = load_pretrained(args.weights)
    with torch.inference_mode():
        u, v = torch.cat([torch.stack(model(b)) for b in sharp.split(32)], dim=1)

    masks = {"all": np.ones(args.num, dtype=bool)}
    for lo, hi in SPEED_BINS:
        masks[f"camera {lo:g}-{hi:g} px"] = (speeds >= lo) & (speeds < hi)
    for k in sorted(set(layers.tolist())):
        masks[f"{k} layers"] = layers == k
    rows = con_rows(u, v, masks)
    columns = ["subset", "n", *[f"con{k}" for k in range(2, u.shape[1] + 1)]]
    print_table(rows, columns)
    predictable = heading_predictability((u[:, 0] > 0).numpy(), headings)
    print(f"canonical side predictable from the motion's heading: {predictable:.3f} (0.5 = not at all)")
    ceiling = motion_ceiling(pairs)
    print(f"Con@3 of the best scorer of the true motion (n . d for one direction n): {ceiling:.3f}")
    write_json(
        args.out,
        {
            "weights": args.weights,
            "split": args.split,
            "num": args.num,
            "size": args.size,
            "motion": json.loads(args.motion),
            "rows": rows,
            "heading_predictability": predictable,
            "motion_ceiling_con3": ceiling,
        },
    )


if __name__ == "__main__":
    main()

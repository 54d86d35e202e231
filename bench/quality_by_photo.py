"""Where a deblurring model gains: pPSNR over the identity baseline per source photograph.

For each photograph of the val and test splits of ``data=natural``'s photo library, ``--num`` scenes
are drawn with that photograph as the only source (background and foreground layers alike, so a
row describes one photo's content; the same seeds, hence the same motions, for every photo), rendered
with the default motion recipe and sensor noise as ``data=natural``'s val/test sets are, and
scored with the library's video metrics against the identity baseline (the blurry image repeated).
It shows whether the gap between the val and the test photos is spread over every photo or comes
from a few.

    python bench/quality_by_photo.py --weights default --out bench/results/quality_by_photo.json
    python bench/quality_by_photo.py --quick
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import add_common_args, print_table, write_json

from hypercut.data.natural import NaturalSceneSet, PhotoLibrary
from hypercut.export import load_pretrained
from hypercut.metrics import VideoMetrics


def photo_rows(
    net: torch.nn.Module, library: PhotoLibrary, splits: list[str], num: int, size: int, seed: int
) -> list[dict[str, object]]:
    """One row per photo of ``splits``: mean pPSNR of ``net`` and of the identity over ``num`` scenes
    ``(size, size)`` drawn from that photo alone, frame 1 / centre / last-frame gains included."""
    rows: list[dict[str, object]] = []
    for split in splits:
        for name, photo in zip(library.names(split), library.images(split)):
            model, identity = VideoMetrics(7, data_range=1.0), VideoMetrics(7, data_range=1.0)
            # the same seed, hence the same motions, for every photo
            for item in NaturalSceneSet([photo], num, (size, size), seed=seed):
                blurry, sharp = item["blurry"][None], item["sharp"][None]
                with torch.inference_mode():
                    pred = net(blurry).clamp(0, 1)
                model.update(pred, sharp)
                identity.update(blurry[:, None].expand_as(sharp), sharp)
            m, b = model.compute(), identity.compute()
            rows.append(
                {
                    "split": split,
                    "photo": name,
                    "identity": float(b["ppsnr"]),
                    "ppsnr": float(m["ppsnr"]),
                    "gain": float(m["ppsnr"] - b["ppsnr"]),
                    "gain_f1": float(m["ppsnr_f1"] - b["ppsnr_f1"]),
                    "gain_f4": float(m["ppsnr_f4"] - b["ppsnr_f4"]),
                    "gain_f7": float(m["ppsnr_f7"] - b["ppsnr_f7"]),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--weights", default="default", help="deblurring weights file or zoo name")
    parser.add_argument("--num", type=int, default=64, help="scenes per photo")
    parser.add_argument("--size", type=int, default=128, help="scene side in pixels")
    args = parser.parse_args()
    if args.quick:
        args.num, args.size = 1, 32
    if args.threads:
        torch.set_num_threads(args.threads)

    library = PhotoLibrary.from_sources(["skimage", "opencv-doc"], [])
    net = load_pretrained(args.weights).eval()
    rows = photo_rows(net, library, ["val", "test"], args.num, args.size, args.seed)
    print_table(rows, ["split", "photo", "identity", "ppsnr", "gain", "gain_f1", "gain_f4", "gain_f7"])
    means = {s: float(np.mean([r["gain"] for r in rows if r["split"] == s])) for s in ("val", "test")}
    print("mean gain per photo: " + ", ".join(f"{s} {g:+.2f} dB" for s, g in means.items()))
    write_json(
        args.out,
        {"weights": args.weights, "num": args.num, "size": args.size, "rows": rows, "mean_gain": means},
    )


if __name__ == "__main__":
    main()

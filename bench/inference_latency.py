"""Inference latency: one 1280x720 blurry image -> T = 7 frames, per backbone.

Times ``net(blurry)`` under ``torch.inference_mode`` (batch 1, whole image, no tiling), median of
repeats after warm-up, with peak memory. Variants: ``fp32``; ``fp32_cl`` (channels_last weights,
``hypercut.perf``); on a GPU ``bf16_cl`` (bf16 autocast + channels_last) and, with ``--compile``,
``bf16_cl_compile``. ``--api`` adds a row for ``hypercut.inference.deblur_image`` (the library's
entry point, including the copy back to the CPU), when that module imports. ``--self-ensemble N``
times every backbone wrapped in ``hypercut.models.SelfEnsemble`` (N passes over flips/transposes).

On the CPU only ``MotionWarpNet`` (the default) and ``MultiFrameUNet`` run by default: the others take from tens of seconds to minutes
per 1280x720 image on two cores (``--backbones all`` includes them).

    PYTHONPATH=src python bench/inference_latency.py                       # CPU: MotionWarpNet, MultiFrameUNet
    PYTHONPATH=src python bench/inference_latency.py --device cuda --backbones all --out inference.json
    PYTHONPATH=src python bench/inference_latency.py --backbones motion_warp --self-ensemble 8
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from common import (
    PeakMemory,
    add_common_args,
    count_flops,
    cuda_settings,
    free_memory,
    pick_device,
    print_table,
    synchronize,
    time_call,
    write_json,
)
from deblur_step import BACKBONES
from torch import nn

from hypercut.models import SelfEnsemble
from hypercut.perf import autocast, optimize_for_speed


def forward_flops(net_cls: type[nn.Module], frames: int, height: int, width: int) -> int:
    net = net_cls(num_frames=frames).to("meta")
    return count_flops(lambda: net(torch.empty(1, 3, height, width, device="meta")))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--backbones", nargs="+", default=None,
                        help=f"any of {list(BACKBONES)} or 'all' (default: all on GPU, multiframe_unet on CPU)")
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--frames", type=int, default=7)
    parser.add_argument("--variants", nargs="+", default=None,
                        choices=["fp32", "fp32_cl", "bf16", "bf16_cl", "bf16_cl_compile"],
                        help="default fp32 bf16_cl on GPU, fp32 fp32_cl on CPU")
    parser.add_argument("--compile", action="store_true", help="add bf16_cl_compile (GPU) for multiframe_unet")
    parser.add_argument("--api", action=argparse.BooleanOptionalAction, default=True,
                        help="also time hypercut.inference.deblur_image (fp32, and bf16 on GPU)")
    parser.add_argument("--flops-only", action="store_true",
                        help="print parameters and forward GMACs of every backbone (meta device, no timing)")
    parser.add_argument("--self-ensemble", type=int, default=1, choices=[1, 2, 4, 8],
                        help="wrap every backbone in SelfEnsemble with this many passes")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=None)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    names = args.backbones or (["all"] if gpu else ["motion_warp", "multiframe_unet"])
    names = list(BACKBONES) if "all" in names else names
    unknown = set(names) - set(BACKBONES)
    if unknown:
        parser.error(f"unknown backbones {sorted(unknown)}")
    variants = args.variants or (["fp32", "bf16_cl"] if gpu else ["fp32", "fp32_cl"])
    if args.compile and "bf16_cl_compile" not in variants:
        variants = [*variants, "bf16_cl_compile"]
    warmup = args.warmup if args.warmup is not None else (3 if gpu else 1)
    repeats = args.repeats or (10 if gpu else (3 if args.quick else 5))
    max_seconds = args.max_seconds or (3.0 if gpu else (5.0 if args.quick else 12.0))
    h, w = args.height, args.width
    print(f"inference_latency: device={device} image={w}x{h} T={args.frames} backbones={names} "
          f"variants={variants} threads={torch.get_num_threads()}", flush=True)

    if args.flops_only:
        rows = []
        for name, cls in BACKBONES.items():
            macs = forward_flops(cls, args.frames, h, w) / 2
            params = sum(p.numel() for p in cls(num_frames=args.frames).parameters())
            rows.append({"backbone": name, "params_m": params / 1e6, "image": f"{w}x{h}", "gmacs": macs / 1e9,
                         "kmacs_per_pixel": macs / (h * w) / 1e3})
        print_table(rows, ["backbone", "params_m", "image", "gmacs", "kmacs_per_pixel"])
        write_json(args.out, {"bench": "model_cost", "frames": args.frames, "rows": rows})
        return {"rows": rows}

    deblur_image = None
    if args.api:
        try:
            from hypercut.inference import deblur_image
        except Exception as exc:  # e.g. PyAV missing on a bare GPU machine
            print(f"  (hypercut.inference not importable, skipping the API rows: {type(exc).__name__}: {exc})")

    result: dict[str, Any] = {"bench": "inference_latency", "device": str(device), "height": h, "width": w,
                              "frames": args.frames, "self_ensemble": args.self_ensemble, "rows": []}
    rows: list[dict[str, Any]] = result["rows"]
    gen = torch.Generator().manual_seed(args.seed)
    image = torch.rand(1, 3, h, w, generator=gen)
    with cuda_settings(device):
        for name in names:
            flops = forward_flops(BACKBONES[name], args.frames, h, w) * args.self_ensemble
            todo = [v for v in variants if not (v.endswith("compile") and name != "multiframe_unet")]
            if deblur_image is not None:
                todo += ["api_fp32"] + (["api_bf16"] if gpu else [])
            for variant in todo:
                torch.manual_seed(args.seed)
                net = BACKBONES[name](num_frames=args.frames).to(device).eval()
                if args.self_ensemble > 1:
                    net = SelfEnsemble(net, args.self_ensemble)
                x = image.to(device)
                if variant.startswith("api"):
                    bf16 = variant == "api_bf16"

                    def run(net: nn.Module = net, bf16: bool = bf16) -> Any:
                        return deblur_image(net, image[0], device=device, bf16=bf16)  # type: ignore[misc]
                else:
                    cl = "_cl" in variant
                    module = optimize_for_speed(net, channels_last=cl, compile="compile" in variant)
                    if cl:
                        x = x.contiguous(memory_format=torch.channels_last)
                    precision = "bf16" if variant.startswith("bf16") else "fp32"

                    def run(module: nn.Module = module, x: torch.Tensor = x, precision: str = precision) -> Any:
                        with torch.inference_mode(), autocast(device, precision):
                            return module(x)

                try:
                    with PeakMemory(device) as mem:
                        t0 = time.perf_counter()
                        out = run()
                        synchronize(device)
                        first_call = time.perf_counter() - t0
                        shape = tuple(out.shape)
                        del out
                        timing = time_call(run, device, warmup=max(0, warmup - 1), repeats=repeats,
                                           max_seconds=max_seconds)
                except Exception as exc:
                    print(f"  {name:16s} {variant:16s} FAILED {type(exc).__name__}: {exc}", flush=True)
                    rows.append({"backbone": name, "variant": variant, "error": f"{type(exc).__name__}: {exc}"})
                    continue
                finally:
                    del net, run
                    free_memory(device)
                median = timing["median_s"]
                row = {
                    "backbone": name,
                    "variant": variant,
                    "passes": args.self_ensemble,
                    "image": f"{w}x{h}",
                    "output": list(shape),
                    "latency_s": median,
                    "min_s": timing["min_s"],
                    "fps_images": 1 / median,
                    "gmacs": flops / 2e9,
                    "tflops": flops / median / 1e12,
                    "first_call_s": first_call,
                    **mem.result(),
                    "timing": timing,
                }
                rows.append(row)
                print(f"  {name:16s} {variant:16s} {median:8.3f} s (min {timing['min_s']:.3f}, n={timing['repeats']}) "
                      f"{row['tflops']:7.3f} TFLOP/s  peak {row['peak_mb']} MB (+{row['delta_mb']})", flush=True)
                write_json(args.out, result)

    result["summary"] = [
        {"name": f"infer {r['image']} {r['backbone']} {r['variant']}" + (f" x{r['passes']}" if r["passes"] > 1 else ""),
         "value": r["latency_s"], "unit": "s",
         "note": f"peak {r['peak_mb']} MB"}
        for r in rows if "latency_s" in r
    ]
    print()
    print_table(rows, ["backbone", "variant", "image", "latency_s", "min_s", "gmacs", "tflops", "peak_mb", "delta_mb"])
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

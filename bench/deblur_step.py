"""Deblurring training step per backbone: samples/s, model TFLOP/s and peak memory.

Each backbone (default configuration) trains on random ``(B, 3, S, S)`` blurry / ``(B, T, 3, S, S)``
sharp tensors with ``NaiveLoss`` (Charbonnier) and Adam: forward, loss, backward, optimizer step.
Variants: ``fp32`` (plain NCHW, the authors' setting), ``fp32_cl`` (channels_last), ``bf16_cl`` (bf16
autocast + channels_last, ``hypercut.perf``), and ``bf16_cl_compile`` with ``--compile``.
FLOPs of the step (forward + backward) are counted on the meta device with ``FlopCounterMode``.

    PYTHONPATH=src python bench/deblur_step.py --quick                  # CPU smoke run
    PYTHONPATH=src python bench/deblur_step.py --device cuda --out deblur.json
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from typing import Any

import torch
from common import (
    PeakMemory,
    add_common_args,
    bf16_peak_tflops,
    count_flops,
    cuda_settings,
    free_memory,
    pick_device,
    print_table,
    synchronize,
    time_call,
    write_json,
)
from torch import nn

from hypercut.losses import NaiveLoss
from hypercut.models import JinBlur2Vid, MotionWarpNet, MultiFrameUNet, PurohitBlur2Vid, UNetConvLSTM
from hypercut.perf import autocast, optimize_for_speed

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "motion_warp": functools.partial(MotionWarpNet, refine_layers=2),  # as conf/model/net/motion_warp.yaml builds it
    "multiframe_unet": MultiFrameUNet,
    "unet_convlstm": UNetConvLSTM,
    "purohit": PurohitBlur2Vid,
    "jin": JinBlur2Vid,
}
VARIANTS = ("fp32", "fp32_cl", "bf16", "bf16_cl", "bf16_cl_compile", "fp32_cl_compile")


def crop_size(backbone: str, size: int) -> int:
    """Training crop side: Jin's cascade works on multiples of 20 (240 or 260 for 256)."""
    return max(20, size - size % 20) if backbone == "jin" else size


def step_flops(build: Callable[[], nn.Module], batch: int, frames: int, size: int) -> int:
    """FLOPs of forward + backward of one step, counted on the meta device (no compute)."""
    net = build().to("meta")
    blurry = torch.empty(batch, 3, size, size, device="meta")

    def run() -> None:
        net(blurry).float().square().mean().backward()

    return count_flops(run)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--size", type=int, default=None, help="crop side (default 256 on GPU, 40 on CPU)")
    parser.add_argument("--batch", type=int, default=None, help="default 8 on GPU (released), 1 on CPU")
    parser.add_argument("--frames", type=int, default=7)
    parser.add_argument("--variants", nargs="+", default=None, choices=VARIANTS,
                        help="default fp32 bf16_cl on GPU, fp32 fp32_cl on CPU")
    parser.add_argument("--compile", action="store_true", help="add bf16_cl_compile for --compile-backbones")
    parser.add_argument("--compile-backbones", nargs="+", default=["multiframe_unet"], choices=list(BACKBONES))
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=None, help="per case, after the warm-up")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    size = args.size or (256 if gpu else 40)
    batch = args.batch or (8 if gpu else 1)
    variants = args.variants or (["fp32", "bf16_cl"] if gpu else ["fp32", "fp32_cl"])
    warmup = args.warmup if args.warmup is not None else (3 if gpu else 1)
    repeats = args.repeats or (10 if gpu else (2 if args.quick else 3))
    max_seconds = args.max_seconds or 3.0
    peak = args.peak_tflops or (bf16_peak_tflops(torch.cuda.get_device_name(device)) if gpu else None)
    print(f"deblur_step: device={device} crop={size} (jin {crop_size('jin', size)}) batch={batch} "
          f"T={args.frames} variants={variants} threads={torch.get_num_threads()}", flush=True)

    result: dict[str, Any] = {"bench": "deblur_step", "device": str(device), "batch": batch, "frames": args.frames,
                              "bf16_peak_tflops_assumed": peak, "rows": []}
    rows: list[dict[str, Any]] = result["rows"]
    loss_fn = NaiveLoss()
    with cuda_settings(device):
        for name in args.backbones:
            side = crop_size(name, size)
            kwargs = {"num_frames": args.frames}

            def build(name: str = name, kwargs: dict[str, int] = kwargs) -> nn.Module:
                return BACKBONES[name](**kwargs)

            flops = step_flops(build, batch, args.frames, side)
            gen = torch.Generator().manual_seed(args.seed)
            blurry = torch.rand(batch, 3, side, side, generator=gen).to(device)
            sharp = torch.rand(batch, args.frames, 3, side, side, generator=gen).to(device)
            todo = list(variants)
            if args.compile and name in args.compile_backbones and "bf16_cl_compile" not in todo:
                todo.append("bf16_cl_compile" if gpu else "fp32_cl_compile")
            base_time = None
            for variant in todo:
                torch.manual_seed(args.seed)
                net = build().to(device)
                params = sum(p.numel() for p in net.parameters())
                module = optimize_for_speed(net, channels_last="_cl" in variant, compile="compile" in variant)
                optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
                precision = "bf16" if variant.startswith("bf16") else "fp32"
                x = blurry.contiguous(memory_format=torch.channels_last) if "_cl" in variant else blurry

                def step(module: nn.Module = module, optimizer: torch.optim.Optimizer = optimizer,
                         x: torch.Tensor = x, precision: str = precision, sharp: torch.Tensor = sharp) -> None:
                    optimizer.zero_grad(set_to_none=True)
                    with autocast(device, precision):
                        pred = module(x)
                    loss = loss_fn(pred.float(), sharp)["loss"]
                    loss.backward()
                    optimizer.step()

                try:
                    with PeakMemory(device) as mem:
                        t0 = time.perf_counter()
                        step()
                        synchronize(device)
                        first_call = time.perf_counter() - t0
                        timing = time_call(step, device, warmup=warmup, repeats=repeats, max_seconds=max_seconds)
                except Exception as exc:
                    print(f"  {name:16s} {variant:16s} FAILED {type(exc).__name__}: {exc}", flush=True)
                    rows.append({"backbone": name, "variant": variant, "error": f"{type(exc).__name__}: {exc}"})
                    continue
                finally:
                    del net, module, optimizer, step
                    free_memory(device)
                median = timing["median_s"]
                if variant == "fp32":
                    base_time = median
                tflops = flops / median / 1e12
                row = {
                    "backbone": name,
                    "variant": variant,
                    "crop": side,
                    "batch": batch,
                    "params_m": params / 1e6,
                    "ms_per_step": median * 1e3,
                    "samples_per_s": batch / median,
                    "speedup_vs_fp32": base_time / median if base_time else None,
                    "tflops": tflops,
                    "pct_bf16_peak": 100 * tflops / peak if peak else None,
                    "gflops_per_step": flops / 1e9,
                    "first_call_s": first_call,
                    **mem.result(),
                    "timing": timing,
                }
                rows.append(row)
                print(f"  {name:16s} {variant:16s} {row['ms_per_step']:9.1f} ms/step {row['samples_per_s']:8.2f} "
                      f"samples/s  {tflops:7.3f} TFLOP/s  peak {row['peak_mb']} MB (+{row['delta_mb']})",
                      flush=True)
                write_json(args.out, result)

    result["summary"] = [
        {"name": f"deblur step {r['backbone']} {r['variant']} b{r['batch']} {r['crop']}px",
         "value": r["samples_per_s"], "unit": "samples/s", "note": f"peak {r['peak_mb']} MB"}
        for r in rows if "samples_per_s" in r
    ]
    print()
    print_table(rows, ["backbone", "variant", "crop", "batch", "ms_per_step", "samples_per_s", "speedup_vs_fp32",
                       "tflops", "pct_bf16_peak", "peak_mb", "delta_mb"])
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

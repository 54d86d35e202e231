"""Ordering-net training step: the authors' compute pattern against hypercut's batched pair encoding.

Reference (written here from the paper's description, not from the authors' code): the "ResnetIm2Vec"
pair encoder is called once per pair and once per reversed pair -- 2K = 6 separate fp32 forward
passes for T = 7, each over the batch -- then the HyperCUT loss and an Adamax step.
Ours: ``hypercut.ordering.OrderingModel`` (one ``pair_scores`` call that encodes all 2K pairs of the
batch at once) + ``hypercut.losses.hypercut_ordering_loss`` + the same Adamax step; optionally with bf16
autocast + channels_last and ``torch.compile`` (``hypercut.perf``).

Both start from the same weights (the reference network loads the library's ``state_dict``, which
also checks that the library's encoder is the paper's network) and get the same inputs; the
non-antisymmetric (released) scoring is used so both compute the same numbers, which is checked.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (1 MAC =
2 FLOPs; forward + backward of the step; the optimizer is not counted). Achieved TFLOP/s is set
against the card's dense bf16 peak (see ``common.BF16_PEAK_TFLOPS``).

    PYTHONPATH=src python bench/ordering_step.py --quick            # CPU smoke run
    PYTHONPATH=src python bench/ordering_step.py --device cuda --compile --out ordering.json
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
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
    time_interleaved,
    write_json,
)
from torch import Tensor, nn

from hypercut.losses import hypercut_ordering_loss
from hypercut.ordering import Hyperplane, OrderingModel, PairEncoder
from hypercut.perf import autocast, optimize_for_speed


# ----------------------------------------------------------------------------------------------------
# The reference, from the paper's description
# ----------------------------------------------------------------------------------------------------
class _RefResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3)
        self.conv2 = nn.Conv2d(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(F.pad(x, (1, 1, 1, 1), mode="reflect"))
        return x + self.conv2(F.pad(F.relu(y), (1, 1, 1, 1), mode="reflect"))


class ReferenceIm2Vec(nn.Module):
    """The paper's "ResnetIm2Vec": ReflectionPad(3) + Conv7x7 6->32, five stride-2 Conv3x3
    (32->64->128->128->128->128), six residual blocks at 128 channels, global average pooling.

    Parameter names follow ``hypercut.ordering.PairEncoder`` so its weights load 1:1 (strictly).
    ``slope`` is the stem/downsampling LeakyReLU slope (1.0 = the released network's identity).
    """

    def __init__(self, slope: float = 0.2) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(6, 32, 7), nn.LeakyReLU(slope))
        layers: list[nn.Module] = []
        prev = 32
        for width in (64, 128, 128, 128, 128):
            layers += [nn.Conv2d(prev, width, 3, stride=2, padding=1), nn.LeakyReLU(slope)]
            prev = width
        self.down = nn.Sequential(*layers)
        self.blocks = nn.Sequential(*(_RefResBlock(128) for _ in range(6)))

    def forward(self, pair: Tensor) -> Tensor:
        return self.blocks(self.down(self.stem(pair))).mean(dim=(2, 3))


def reference_loss(u: Tensor, v: Tensor) -> Tensor:
    """The HyperCUT loss: 0.5 mean_k softplus(u_k v_k) + 0.5 mean_{j<k} softplus(-u_j u_k)."""
    k = u.shape[1]
    l_diff = F.softplus(u * v).mean()
    same = [F.softplus(-u[:, i] * u[:, j]) for i in range(k) for j in range(i + 1, k)]
    l_same = torch.stack(same, 1).mean() if same else u.new_zeros(())
    return 0.5 * l_diff + 0.5 * l_same


def reference_scores(encoder: nn.Module, normal: Tensor, sharp: Tensor) -> tuple[Tensor, Tensor]:
    """The authors' pattern: one encoder call per pair and one per reversed pair (2K calls)."""
    t = sharp.shape[1]
    us, vs = [], []
    for k in range(t // 2):
        first, last = sharp[:, k], sharp[:, t - 1 - k]
        us.append(encoder(torch.cat((first, last), dim=1)) @ normal)
        vs.append(encoder(torch.cat((last, first), dim=1)) @ normal)
    return torch.stack(us, 1), torch.stack(vs, 1)


# ----------------------------------------------------------------------------------------------------
# Variants
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    name: str
    pattern: str  # "reference" | "batched"
    precision: str  # "fp32" | "bf16"
    channels_last: bool
    compile: bool

    @classmethod
    def parse(cls, name: str) -> Variant:
        tokens = name.split("_")
        if tokens[0] not in ("reference", "batched") or len(tokens) < 2 or tokens[1] not in ("fp32", "bf16"):
            raise ValueError(f"bad variant {name!r}: expected (reference|batched)_(fp32|bf16)[_cl][_compile]")
        extra = set(tokens[2:])
        if extra - {"cl", "compile"}:
            raise ValueError(f"bad variant {name!r}: unknown suffix {sorted(extra - {'cl', 'compile'})}")
        return cls(name, tokens[0], tokens[1], "cl" in extra, "compile" in extra)


def build_step(
    variant: Variant, state: dict[str, Tensor], normal: Tensor, device: torch.device, lr: float
) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """Returns ``(train_step(sharp) -> loss, flop_step(sharp) -> loss)``; the second is eager."""
    if variant.pattern == "reference":
        net: nn.Module = ReferenceIm2Vec()
        net.load_state_dict(state, strict=True)
        net.to(device)
        plane = normal.to(device)
        if variant.channels_last:
            net.to(memory_format=torch.channels_last)
        module = torch.compile(net) if variant.compile else net

        def forward(sharp: Tensor) -> tuple[Tensor, Tensor]:
            return reference_scores(module, plane, sharp)

        loss_fn = reference_loss
    else:
        encoder = PairEncoder()
        encoder.load_state_dict(state, strict=True)
        model = OrderingModel(encoder, Hyperplane(normal.numel()), antisymmetric=False).to(device)
        model.hyperplane.normal.copy_(normal.to(device))
        net = model
        module = optimize_for_speed(model, channels_last=variant.channels_last, compile=variant.compile)

        def forward(sharp: Tensor) -> tuple[Tensor, Tensor]:
            return module(sharp)

        loss_fn = hypercut_ordering_loss

    optimizer = torch.optim.Adamax(net.parameters(), lr=lr)

    def step(sharp: Tensor) -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, variant.precision):
            u, v = forward(sharp)
        loss = loss_fn(u.float(), v.float())
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step, forward  # type: ignore[return-value]


def step_flops(pattern: str, state: dict[str, Tensor], normal: Tensor, shape: tuple[int, ...]) -> int:
    """Model FLOPs of one training step (forward + backward), counted on the meta device."""
    sharp = torch.empty(shape, device="meta")
    if pattern == "reference":
        net = ReferenceIm2Vec().to("meta")
        plane = torch.empty(normal.shape, device="meta")

        def run() -> None:
            u, v = reference_scores(net, plane, sharp)
            reference_loss(u, v).backward()
    else:
        model = OrderingModel(PairEncoder(), Hyperplane(normal.numel()), antisymmetric=False).to("meta")

        def run() -> None:
            u, v = model(sharp)
            hypercut_ordering_loss(u, v).backward()

    return count_flops(run)


def pair_gmacs(size: int) -> float:
    """Forward GMACs of the pair encoder for one pair at ``size x size`` (meta device)."""
    encoder = PairEncoder().to("meta")
    return count_flops(lambda: encoder(torch.empty(1, 6, size, size, device="meta"))) / 2e9


# ----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--size", type=int, default=None, help="frame side (default 256 on GPU, 64 on CPU)")
    parser.add_argument("--batch", type=int, nargs="+", default=None,
                        help="batch sizes (default 8 32 on GPU, 4 on CPU)")
    parser.add_argument("--frames", type=int, default=7)
    parser.add_argument("--variants", nargs="+", default=None,
                        help="(reference|batched)_(fp32|bf16)[_cl][_compile]; default per device")
    parser.add_argument("--compile", action="store_true", help="add batched_bf16_cl_compile (GPU) "
                        "or batched_fp32_cl_compile (CPU) at the largest batch")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=None, help="per variant (after warm-up)")
    parser.add_argument("--lr", type=float, default=5e-4, help="Adamax learning rate (released: 5e-4)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the assumed bf16 peak")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    size = args.size or (256 if gpu else (48 if args.quick else 64))
    batches = args.batch or ([8, 32] if gpu else [2 if args.quick else 4])
    variants = [Variant.parse(v) for v in (args.variants or (
        ["reference_fp32", "batched_fp32", "batched_bf16_cl"] if gpu
        else ["reference_fp32", "batched_fp32", "batched_fp32_cl"]))]
    compile_variant = Variant.parse("batched_bf16_cl_compile" if gpu else "batched_fp32_cl_compile")
    warmup = args.warmup if args.warmup is not None else (3 if gpu else 1)
    repeats = args.repeats or (10 if gpu else (3 if args.quick else 5))
    max_seconds = args.max_seconds or (10.0 if gpu else (4.0 if args.quick else 8.0))
    inner = 3 if gpu else 1
    peak = args.peak_tflops or (bf16_peak_tflops(torch.cuda.get_device_name(device)) if gpu else None)

    print(f"ordering_step: device={device} size={size}x{size} T={args.frames} pairs/seq={2 * (args.frames // 2)} "
          f"batches={batches} threads={torch.get_num_threads()} bf16 peak assumed={peak} TFLOP/s", flush=True)

    torch.manual_seed(args.seed)
    base = PairEncoder()
    normal = Hyperplane(base.out_dim, seed=args.seed).normal.clone()
    state = copy.deepcopy(base.state_dict())
    ReferenceIm2Vec().load_state_dict(state, strict=True)  # the library's encoder is the paper's network
    params = sum(p.numel() for p in base.parameters())
    gmacs_256 = pair_gmacs(256)
    gmacs_size = pair_gmacs(size)
    print(f"encoder: {params:,} parameters; forward {gmacs_256:.3f} GMACs/pair at 256x256 "
          f"(reference: 1.53), {gmacs_size:.3f} at {size}x{size}", flush=True)

    result: dict[str, Any] = {
        "bench": "ordering_step",
        "device": str(device),
        "size": size,
        "frames": args.frames,
        "encoder_params": params,
        "gmacs_per_pair_fwd_256": gmacs_256,
        "gmacs_per_pair_fwd": gmacs_size,
        "bf16_peak_tflops_assumed": peak,
        "checks": [],
        "rows": [],
    }
    rows: list[dict[str, Any]] = result["rows"]

    def run_batch(batch: int) -> None:
        gen = torch.Generator().manual_seed(args.seed + batch)
        sharp = torch.rand(batch, args.frames, 3, size, size, generator=gen).to(device)
        shape = tuple(sharp.shape)
        flops = {p: step_flops(p, state, normal, shape) for p in ("reference", "batched")}
        rule_flops = 3 * 2 * gmacs_size * 1e9 * 2 * (args.frames // 2) * batch

        # Same weights, same inputs: the two patterns must compute the same scores and loss.
        ref_step, ref_fwd = build_step(Variant.parse("reference_fp32"), state, normal, device, args.lr)
        our_step, our_fwd = build_step(Variant.parse("batched_fp32"), state, normal, device, args.lr)
        with torch.no_grad():
            u_ref, v_ref = ref_fwd(sharp)
            u_our, v_our = our_fwd(sharp)
        check = {
            "batch": batch,
            "max_abs_diff_u": float((u_ref - u_our).abs().max()),
            "max_abs_diff_v": float((v_ref - v_our).abs().max()),
            "loss_reference": float(reference_loss(u_ref, v_ref)),
            "loss_ours": float(hypercut_ordering_loss(u_our, v_our)),
            "score_abs_mean": float(u_ref.abs().mean()),
        }
        result["checks"].append(check)
        print(f"check (batch {batch}): max |u_ref - u_ours| = {check['max_abs_diff_u']:.2e} "
              f"(mean |u| {check['score_abs_mean']:.2e}); loss {check['loss_reference']:.6f} vs "
              f"{check['loss_ours']:.6f}", flush=True)
        del ref_step, ref_fwd, our_step, our_fwd
        free_memory(device)

        # Eager variants are timed in turn (A B C A B C ...), so a change in the machine's load
        # hits them alike; a compiled variant is timed after them (its compilation can be long).
        eager = [v for v in variants if not v.compile]
        compiled = [v for v in variants if v.compile]
        if args.compile and batch == max(batches) and compile_variant not in compiled:
            compiled.append(compile_variant)
        prepared: dict[str, tuple[Variant, Callable[[Tensor], Tensor], float, dict[str, Any]]] = {}

        def prepare(variant: Variant) -> bool:
            if variant.precision == "bf16" and not gpu:
                print(f"  (bf16 on this CPU is emulated and slow; running {variant.name} anyway)")
            try:
                step = build_step(variant, state, normal, device, args.lr)[0]
                with PeakMemory(device) as mem:
                    t0 = time.perf_counter()
                    step(sharp)  # first call: cuDNN autotuning / compilation
                    synchronize(device)
                    first_call = time.perf_counter() - t0
                    for _ in range(warmup):
                        step(sharp)
            except Exception as exc:  # a failing variant (e.g. compile) must not lose the others
                print(f"  {variant.name}: FAILED {type(exc).__name__}: {exc}", flush=True)
                rows.append({"batch": batch, "variant": variant.name, "error": f"{type(exc).__name__}: {exc}"})
                return False
            prepared[variant.name] = (variant, step, first_call, mem.result())
            return True

        def report(name: str, timing: dict[str, Any], ref_time: float | None) -> None:
            variant, _, first_call, memory = prepared[name]
            median = timing["median_s"]
            tflops = flops[variant.pattern] / median / 1e12
            row = {
                "batch": batch,
                "size": size,
                "variant": name,
                "ms_per_step": median * 1e3,
                "seq_per_s": batch / median,
                "speedup_vs_ref": (ref_time / median) if ref_time else None,
                "tflops": tflops,
                "pct_bf16_peak": (100 * tflops / peak) if peak else None,
                "flops_per_step": flops[variant.pattern],
                "flops_per_step_3x_rule": rule_flops,
                "first_call_s": first_call,
                **memory,
                "timing": timing,
            }
            rows.append(row)
            print(f"  batch {batch:3d} {name:26s} {row['ms_per_step']:9.2f} ms/step "
                  f"{row['seq_per_s']:9.1f} seq/s  x{row['speedup_vs_ref'] or 0:5.2f}  "
                  f"{tflops:7.2f} TFLOP/s  peak mem {row['peak_mb']} MB", flush=True)
            write_json(args.out, result)  # after every row: a later timeout keeps what was measured

        for variant in eager:
            prepare(variant)
        timings = time_interleaved({name: partial(p[1], sharp) for name, p in prepared.items()}, device,
                                   repeats=repeats, inner=inner, max_seconds=max_seconds * len(prepared))
        ref_time = timings["reference_fp32"]["median_s"] if "reference_fp32" in timings else None
        for name in timings:
            report(name, timings[name], ref_time)
        for variant in compiled:
            if prepare(variant):
                step = prepared[variant.name][1]
                timing = time_call(partial(step, sharp), device, warmup=0, repeats=repeats, inner=inner,
                                   max_seconds=max_seconds)
                report(variant.name, timing, ref_time)
        prepared.clear()
        free_memory(device)

    with cuda_settings(device):
        for batch in batches:
            run_batch(batch)

    best = max((r for r in rows if "seq_per_s" in r), key=lambda r: r["tflops"], default=None)
    result["summary"] = [
        {"name": f"ordering b{r['batch']} {r['variant']}", "value": r["seq_per_s"], "unit": "seq/s",
         "note": f"x{r['speedup_vs_ref']:.2f} vs reference" if r.get("speedup_vs_ref") else ""}
        for r in rows if "seq_per_s" in r
    ]
    if best is not None and best.get("pct_bf16_peak") is not None:
        result["summary"].append({"name": f"ordering best % of bf16 peak ({best['variant']} b{best['batch']})",
                                  "value": best["pct_bf16_peak"], "unit": "%", "note": f"peak {peak} TFLOP/s"})
    print()
    print_table(rows, ["batch", "size", "variant", "ms_per_step", "seq_per_s", "speedup_vs_ref", "tflops",
                       "pct_bf16_peak", "peak_mb", "delta_mb"])
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

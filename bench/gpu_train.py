"""GPU proof that a backbone learns: MultiFrameUNet on synthetic motion blur, naive vs HyperCUT loss.

Self-contained (torch + hypercut's torch-only layers + torchmetrics; no Hydra, Lightning, Pillow,
albumentations or PyAV), so it runs on a bare GPU machine. In order, within ``--budget-s`` seconds:

1. Generate the data in memory with torch (on the GPU when there is one): per sequence a coloured
   background (flat regions with sharp edges from thresholded smooth noise, modulated by 1/f
   luminance noise) and 1-3 textured convex polygons or ellipses moving in a straight line with a
   random direction and speed (10-25 % of the width over the exposure) and a little rotation. The
   exposure is rendered at ``T * 5`` sub-frames composited in linear light (gamma 2.2); the blurry
   image is the mean of the sub-frames, sharp frame t the middle sub-frame of segment t. Stored as
   uint8 like real data. The camera pans too (3-10 % of the width; see ``render_batch`` for why), and
   sub-frames are rendered at 2x and box-filtered. Default: 128x128, 4096 train + 256 val sequences
   (1.6 GiB of uint8 on the GPU).
2. Train a HyperCUT ordering model (antisymmetric ``OrderingModel``, the reference ``PairEncoder``)
   on the sharp training sequences (Adamax 5e-4, the released setting), bf16 autocast.
3. Train ``MultiFrameUNet`` twice from the same initialisation: with ``NaiveLoss`` and with
   ``HyperCUTLoss(OrderCanonicalizer(ordering model))``. AdamW lr 5e-4 (linear warm-up, cosine
   decay over the phase's time budget), gradient clipping 1.0, bf16 autocast + channels_last.
4. Evaluate on the val set: per-frame pPSNR (``hypercut.metrics.VideoMetrics``) of each model and of
   the identity baseline (the blurry image repeated T times), the difference, and a pass/fail
   against the target: mean pPSNR at least 2 dB above identity, both losses.

Writes ``--out`` (JSON) and ``--md`` (the Markdown tables) and prints them.

    PYTHONPATH=src python bench/gpu_train.py --quick                       # CPU smoke run (< 1 min)
    PYTHONPATH=src python bench/gpu_train.py --device cuda --budget-s 330 --out gpu_train.json --md gpu_train.md
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hypercut.losses import HyperCUTLoss, HyperCUTOrderingLoss, NaiveLoss
from hypercut.metrics import OrderingMetrics, VideoMetrics
from hypercut.models import MultiFrameUNet
from hypercut.ordering import Hyperplane, OrderCanonicalizer, OrderingModel, PairEncoder
from hypercut.perf import autocast, optimize_for_speed

GAMMA = 2.2
SUBFRAMES = 5  # per sharp frame; odd, so the sharp frame is the middle sub-frame of its segment
MAX_OBJECTS = 3
MAX_SIDES = 7


# ----------------------------------------------------------------------------------------------------
# Synthetic data, torch only
# ----------------------------------------------------------------------------------------------------
def _uniform(shape: tuple[int, ...], lo: float, hi: float, gen: torch.Generator, device: torch.device) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)


def smooth_noise(n: int, h: int, w: int, beta: Tensor, gen: torch.Generator, device: torch.device) -> Tensor:
    """``(n, 1, h, w)`` noise with amplitude spectrum ``1 / f**beta`` (per sample), zero mean, unit std."""
    white = torch.randn(n, 1, h, w, generator=gen, device=device)
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    radius = torch.sqrt(fx * fx + fy * fy).clamp_min(1.0 / max(h, w))
    spectrum = torch.fft.rfft2(white) / radius.pow(beta.view(n, 1, 1, 1))
    x = torch.fft.irfft2(spectrum, s=(h, w))
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return x / x.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)


def _colours(n: int, gen: torch.Generator, device: torch.device) -> Tensor:
    """Random saturated-ish RGB colours ``(n, 3, 1, 1)`` in display values."""
    grey = _uniform((n, 1, 1, 1), 0.15, 0.85, gen, device)
    tint = _uniform((n, 3, 1, 1), -0.3, 0.3, gen, device)
    return (grey + tint).clamp(0.03, 0.97)


def texture(n: int, h: int, w: int, gen: torch.Generator, device: torch.device, two_tone: bool = True) -> Tensor:
    """``(n, 3, h, w)`` display-value textures modulated by 1/f luminance noise.

    ``two_tone``: two colour regions with sharp boundaries (thresholded smooth noise), as backgrounds
    have; otherwise one colour with a milder texture, as the objects have (so that their appearance can
    be told from the blur).
    """
    lum = smooth_noise(n, h, w, _uniform((n,), 0.9, 1.5, gen, device), gen, device)
    chroma = torch.cat([smooth_noise(n, h, w, torch.full((n,), 1.5, device=device), gen, device)
                        for _ in range(3)], dim=1)
    if two_tone:
        regions = smooth_noise(n, h, w, _uniform((n,), 1.6, 2.2, gen, device), gen, device)
        threshold = _uniform((n, 1, 1, 1), -0.6, 0.6, gen, device)
        base = torch.where(regions > threshold, _colours(n, gen, device), _colours(n, gen, device))
        amp = _uniform((n, 1, 1, 1), 0.08, 0.25, gen, device)
    else:
        base = _colours(n, gen, device)
        amp = _uniform((n, 1, 1, 1), 0.05, 0.2, gen, device)
    return (base * (1 + amp * lum) + 0.02 * chroma).clamp(0.0, 1.0)


def _object_params(n: int, h: int, w: int, gen: torch.Generator, device: torch.device,
                   speed_range: tuple[float, float] = (0.10, 0.25)) -> dict[str, Tensor]:
    """Shape, pose and motion of ``MAX_OBJECTS`` object slots per sample (inactive slots masked)."""
    m, side = MAX_OBJECTS, min(h, w)
    count = torch.randint(1, m + 1, (n, 1), generator=gen, device=device)
    radius = _uniform((n, m), 0.12, 0.25, gen, device) * side
    aspect = _uniform((n, m), 0.55, 1.0, gen, device)
    speed = _uniform((n, m), speed_range[0], speed_range[1], gen, device) * w
    heading = _uniform((n, m), 0.0, 2 * math.pi, gen, device)
    sides = torch.randint(3, MAX_SIDES + 1, (n, m), generator=gen, device=device)
    k = torch.arange(MAX_SIDES, device=device)
    jitter = _uniform((n, m, MAX_SIDES), -0.3, 0.3, gen, device)
    normals = _uniform((n, m, 1), 0.0, 2 * math.pi, gen, device) + (k + jitter) * 2 * math.pi / sides[..., None]
    offsets = _uniform((n, m, MAX_SIDES), 0.7, 1.0, gen, device)
    offsets = torch.where(k < sides[..., None], offsets, torch.full_like(offsets, 1e6))  # unused sides
    return {
        "active": torch.arange(m, device=device) < count,
        "ellipse": torch.rand((n, m), generator=gen, device=device) < 0.4,
        "radius": radius,
        "aspect": aspect,
        "centre_x": _uniform((n, m), 0.2, 0.8, gen, device) * w,
        "centre_y": _uniform((n, m), 0.2, 0.8, gen, device) * h,
        "vel_x": speed * torch.cos(heading),
        "vel_y": speed * torch.sin(heading),
        "angle": _uniform((n, m), 0.0, 2 * math.pi, gen, device),
        "spin": _uniform((n, m), -0.3, 0.3, gen, device),
        "normal_angle": normals,
        "offset": offsets,
    }


def _object_layer(p: dict[str, Tensor], j: int, tau: float, tex_lin: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
    """Coverage ``(n, 1, h, w)`` and linear colour ``(n, 3, h, w)`` of object slot ``j`` at time ``tau``."""
    device = tex_lin.device
    ys = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1) + 0.5
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w) + 0.5
    cx = (p["centre_x"][:, j] + tau * p["vel_x"][:, j]).view(-1, 1, 1)
    cy = (p["centre_y"][:, j] + tau * p["vel_y"][:, j]).view(-1, 1, 1)
    theta = (p["angle"][:, j] + tau * p["spin"][:, j]).view(-1, 1, 1)
    dx, dy = xs - cx, ys - cy
    cos, sin = torch.cos(theta), torch.sin(theta)
    qx, qy = cos * dx + sin * dy, -sin * dx + cos * dy  # object frame (rotation by -theta)
    r = p["radius"][:, j].view(-1, 1, 1)
    a, b = r, r * p["aspect"][:, j].view(-1, 1, 1)
    # Approximate signed distances in pixels (exact on the boundary, which is what anti-aliasing needs).
    ellipse = (torch.sqrt((qx / a) ** 2 + (qy / b) ** 2) - 1.0) * b
    nx, ny = torch.cos(p["normal_angle"][:, j]), torch.sin(p["normal_angle"][:, j])  # (n, S)
    half_planes = (qx[..., None] * nx[:, None, None] + qy[..., None] * ny[:, None, None]
                   - (p["offset"][:, j] * r.view(-1, 1))[:, None, None])
    polygon = torch.maximum(half_planes.amax(-1), torch.sqrt(qx**2 + qy**2) - 1.3 * r)
    sdf = torch.where(p["ellipse"][:, j].view(-1, 1, 1), ellipse, polygon)
    alpha = (0.5 - sdf).clamp(0.0, 1.0) * p["active"][:, j].view(-1, 1, 1)
    grid = torch.stack((qx, qy), dim=-1) / (1.3 * r[..., None])  # texture moves and turns with the object
    colour = F.grid_sample(tex_lin, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return alpha.unsqueeze(1), colour


def _background_layer(big: Tensor, shift_x: Tensor, shift_y: Tensor, h: int, w: int) -> Tensor:
    """The centre ``h x w`` window of a ``2h x 2w`` texture, displaced by ``(shift_x, shift_y)`` pixels."""
    device = big.device
    ys = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1) + 0.5
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w) + 0.5
    # Normalised coordinates of the 2h x 2w texture: its centre window spans [-0.5, 0.5].
    gx = (xs + shift_x.view(-1, 1, 1)) / w - 0.5
    gy = (ys + shift_y.view(-1, 1, 1)) / h - 0.5
    grid = torch.stack((gx.expand(-1, h, w), gy.expand(-1, h, w)), dim=-1)
    return F.grid_sample(big, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@torch.no_grad()
def render_batch(n: int, size: int, frames: int, gen: torch.Generator, device: torch.device,
                 pan: tuple[float, float] = (0.03, 0.10), speed: tuple[float, float] = (0.10, 0.25),
                 supersample: int = 2) -> tuple[Tensor, Tensor]:
    """``n`` sequences: blurry ``(n, 3, S, S)`` and sharp ``(n, T, 3, S, S)`` as uint8.

    The camera pans (the background moves by ``pan`` x width over the exposure, random direction)
    and the objects move on their own (``speed`` x width). Every sub-frame is rendered at
    ``supersample`` times the resolution and box-filtered down (in linear light). Why both:
    ``docs/RESULTS.md``, "Why the synthetic data pans and supersamples".
    """
    ss = max(1, int(supersample))
    h = w = size * ss
    big = texture(n, 2 * h, 2 * w, gen, device).pow(GAMMA)
    pan_speed = _uniform((n,), pan[0], pan[1], gen, device) * w
    pan_heading = _uniform((n,), 0.0, 2 * math.pi, gen, device)
    tex_size = max(32, h // 2)
    objects = [texture(n, tex_size, tex_size, gen, device, two_tone=False).pow(GAMMA) for _ in range(MAX_OBJECTS)]
    params = _object_params(n, h, w, gen, device, speed)
    total = frames * SUBFRAMES
    accum = torch.zeros(n, 3, size, size, device=device)
    sharp = torch.empty(n, frames, 3, size, size, device=device)
    for s in range(total):
        tau = (s + 0.5) / total - 0.5  # exposure time in (-0.5, 0.5)
        frame = _background_layer(big, tau * pan_speed * torch.cos(pan_heading),
                                  tau * pan_speed * torch.sin(pan_heading), h, w)
        for j in range(MAX_OBJECTS):
            alpha, colour = _object_layer(params, j, tau, objects[j], h, w)
            frame = frame * (1 - alpha) + colour * alpha
        if ss > 1:
            frame = F.avg_pool2d(frame, ss)
        accum += frame
        if s % SUBFRAMES == SUBFRAMES // 2:
            sharp[:, s // SUBFRAMES] = frame
    blurry = (accum / total).clamp(0, 1).pow(1 / GAMMA)
    sharp = sharp.clamp(0, 1).pow(1 / GAMMA)
    return _to_uint8(blurry), _to_uint8(sharp)


def _to_uint8(x: Tensor) -> Tensor:
    return (x * 255).round_().clamp_(0, 255).to(torch.uint8)


def make_dataset(count: int, size: int, frames: int, seed: int, device: torch.device, chunk: int,
                 pan: tuple[float, float] = (0.03, 0.10), speed: tuple[float, float] = (0.10, 0.25),
                 supersample: int = 2) -> dict[str, Tensor]:
    gen = torch.Generator(device=device).manual_seed(seed)
    blurry, sharp = [], []
    for start in range(0, count, chunk):
        b, s = render_batch(min(chunk, count - start), size, frames, gen, device, pan, speed, supersample)
        blurry.append(b)
        sharp.append(s)
    return {"blurry": torch.cat(blurry), "sharp": torch.cat(sharp)}


def get_batch(data: dict[str, Tensor], index: Tensor) -> tuple[Tensor, Tensor]:
    return data["blurry"][index].float().div_(255), data["sharp"][index].float().div_(255)


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------
def lr_factor(step: int, progress: float, warmup_steps: int, min_factor: float = 0.02) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay over the phase's elapsed-time fraction."""
    warm = min(1.0, (step + 1) / max(1, warmup_steps))
    cosine = min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return warm * cosine


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_ordering(encoder: str, seed: int) -> OrderingModel:
    """Antisymmetric ordering model with the ``"reference"`` encoder or the ``"small"`` one used for CPU runs."""
    if encoder == "reference":
        net = PairEncoder()
    else:
        net = PairEncoder(width=16, dims=(32, 64, 64, 64), num_res_blocks=2, out_dim=64)
    return OrderingModel(net, Hyperplane(net.out_dim, seed=seed), antisymmetric=True)


def train_ordering(model: OrderingModel, data: dict[str, Tensor], args: argparse.Namespace,
                   device: torch.device, seconds: float, log: list[dict[str, Any]]) -> dict[str, Any]:
    loss_fn = HyperCUTOrderingLoss()
    module = optimize_for_speed(model, channels_last=device.type == "cuda")
    optimizer = torch.optim.Adamax(model.parameters(), lr=args.order_lr)
    gen = torch.Generator(device=device).manual_seed(args.seed + 1)
    n = data["sharp"].shape[0]
    model.train()
    step, start = 0, time.perf_counter()
    while True:
        index = torch.randint(0, n, (args.order_batch,), generator=gen, device=device)
        sharp = data["sharp"][index].float().div_(255)
        with autocast(device, args.precision):
            u, v = module(sharp)
        loss = loss_fn(u.float(), v.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % 25 == 0:  # the host runs ahead of the GPU: wait for it now and then
            _sync(device)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"ordering loss is {value} at step {step}")
            if step % 100 == 0:
                log.append({"phase": "ordering", "step": step, "t": round(time.perf_counter() - start, 1),
                            "loss": value})
            if step % (500 if device.type == "cuda" else 100) == 0:
                print(f"  ordering step {step:5d}  {time.perf_counter() - start:6.1f}s  loss {value:.4f}  "
                      f"|u| {float(u.detach().abs().mean()):.3f}", flush=True)
        if time.perf_counter() - start >= seconds:
            break
    _sync(device)
    return {"steps": step, "seconds": round(time.perf_counter() - start, 1)}


@torch.no_grad()
def evaluate_ordering(model: OrderingModel, data: dict[str, Tensor], device: torch.device,
                      precision: str, batch: int = 64) -> dict[str, float]:
    model.eval()
    metrics = OrderingMetrics(model_pairs(data)).to(device)
    for start in range(0, data["sharp"].shape[0], batch):
        sharp = data["sharp"][start:start + batch].float().div_(255)
        with autocast(device, precision):
            u, v = model(sharp)
        metrics.update(u.float(), v.float())
    return {k: round(float(v), 4) for k, v in metrics.compute().items()}


def model_pairs(data: dict[str, Tensor]) -> int:
    return data["sharp"].shape[1] // 2


def train_deblur(net: nn.Module, loss_fn: nn.Module, data: dict[str, Tensor], val: dict[str, Tensor],
                 args: argparse.Namespace, device: torch.device, seconds: float, name: str,
                 log: list[dict[str, Any]]) -> dict[str, Any]:
    module = optimize_for_speed(net, channels_last=device.type == "cuda", compile=args.compile)
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.99))
    takes_step = isinstance(loss_fn, HyperCUTLoss)
    gen = torch.Generator(device=device).manual_seed(args.seed + 2)
    flip_rng = random.Random(args.seed + 3)
    n = data["blurry"].shape[0]
    checkpoints = [i / (args.progress_evals + 1) for i in range(1, args.progress_evals + 1)]
    net.train()
    step, start, progress = 0, time.perf_counter(), 0.0
    clipped = 0
    while True:
        index = torch.randint(0, n, (args.batch,), generator=gen, device=device)
        blurry, sharp = get_batch(data, index)
        if flip_rng.random() < 0.5:  # a mirrored scene is as likely (more variety); decided on the host
            blurry, sharp = blurry.flip(-1), sharp.flip(-1)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * lr_factor(step, progress, args.warmup_steps)
        with autocast(device, args.precision):
            pred = module(blurry.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else blurry)
            terms = loss_fn(pred.float(), sharp, step=step) if takes_step else loss_fn(pred.float(), sharp)
        loss = terms["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip)
        optimizer.step()
        step += 1
        elapsed = time.perf_counter() - start
        progress = elapsed / seconds
        if step % 25 == 0:  # the host runs ahead of the GPU: wait for it now and then
            _sync(device)
            value = float(loss.detach())
            clipped += int(float(grad_norm) > args.clip)
            if not math.isfinite(value):
                raise FloatingPointError(f"{name}: loss is {value} at step {step}")
            if step % 200 == 0:
                entry = {"phase": name, "step": step, "t": round(elapsed, 1), "loss": round(value, 5),
                         "grad_norm": round(float(grad_norm), 4), "lr": optimizer.param_groups[0]["lr"]}
                entry.update({k: round(float(v), 4) for k, v in terms.items() if k != "loss"})
                log.append(entry)
                if step % (1000 if device.type == "cuda" else 200) == 0:
                    print(f"  {name:8s} step {step:6d} {elapsed:6.1f}s loss {value:.4f} |g| {float(grad_norm):.3f} "
                          + " ".join(f"{k} {float(v):.3g}" for k, v in terms.items()
                                     if k in ("alpha", "flipped", "pred_wrong_side")), flush=True)
        if checkpoints and progress >= checkpoints[0]:
            checkpoints.pop(0)
            quick = evaluate_deblur(net, {k: v[:64] for k, v in val.items()}, device, args.precision)
            net.train()
            log.append({"phase": name, "step": step, "t": round(elapsed, 1), "val64_ppsnr": quick["ppsnr"],
                        "val64_identity_ppsnr": quick["identity_ppsnr"]})
            print(f"  {name:8s} step {step:6d} val(64) pPSNR {quick['ppsnr']:.2f} dB "
                  f"(identity {quick['identity_ppsnr']:.2f})", flush=True)
        if elapsed >= seconds:
            break
    _sync(device)
    return {"steps": step, "seconds": round(time.perf_counter() - start, 1),
            "samples_per_s": round(step * args.batch / (time.perf_counter() - start), 1),
            "clipped_checks": f"{clipped}/{step // 25}"}


@torch.no_grad()
def evaluate_deblur(net: nn.Module, val: dict[str, Tensor], device: torch.device, precision: str,
                    canonicalizer: OrderCanonicalizer | None = None, batch: int = 64) -> dict[str, Any]:
    net.eval()
    frames = val["sharp"].shape[1]
    model_m = VideoMetrics(frames, data_range=1.0).to(device)
    ident_m = VideoMetrics(frames, data_range=1.0).to(device)
    canon_m = VideoMetrics(frames, data_range=1.0).to(device) if canonicalizer is not None else None
    order_m = OrderingMetrics(frames // 2).to(device) if canonicalizer is not None else None
    canonical_side = torch.zeros((), device=device)
    for start in range(0, val["blurry"].shape[0], batch):
        blurry, sharp = get_batch(val, torch.arange(start, min(start + batch, val["blurry"].shape[0]), device=device))
        with autocast(device, precision):
            pred = net(blurry)
        pred = pred.float().clamp(0, 1)
        model_m.update(pred, sharp)
        ident_m.update(blurry.unsqueeze(1).expand_as(sharp).contiguous(), sharp)
        if canonicalizer is not None and canon_m is not None and order_m is not None:
            canonical, _ = canonicalizer(sharp)
            canon_m.update(pred, canonical)
            u, v = canonicalizer.model(pred)
            order_m.update(u.float(), v.float())
            canonical_side += (u[:, 0] > 0).sum()
    out: dict[str, Any] = {}
    model, ident = model_m.compute(), ident_m.compute()
    out["ppsnr"] = float(model["ppsnr"])
    out["ppsnr_frames"] = [float(model[f"ppsnr_f{i + 1}"]) for i in range(frames)]
    out["psnr"] = float(model["psnr"])
    out["pssim"] = float(model["pssim"])
    out["reversed_frac"] = float(model["reversed_frac"])
    out["identity_ppsnr"] = float(ident["ppsnr"])
    out["identity_ppsnr_frames"] = [float(ident[f"ppsnr_f{i + 1}"]) for i in range(frames)]
    out["identity_pssim"] = float(ident["pssim"])
    if canon_m is not None and order_m is not None:
        canon = canon_m.compute()
        out["psnr_vs_canonical"] = float(canon["psnr"])
        out["psnr_vs_canonical_frames"] = [float(canon[f"psnr_f{i + 1}"]) for i in range(frames)]
        pred_order = order_m.compute()
        # Fraction of predictions the ordering model puts in the canonical order (outer pair u_0 > 0).
        out["pred_canonical_side"] = float(canonical_side) / val["blurry"].shape[0]
        out["pred_order"] = {k: round(float(v), 4) for k, v in pred_order.items()}
    return out


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------
def table(name: str, res: dict[str, Any], bar_db: float) -> str:
    frames = len(res["ppsnr_frames"])
    head = "| " + " | ".join(["", *[f"f{i + 1}" for i in range(frames)], "mean"]) + " |"
    sep = "|" + "---|" * (frames + 2)
    model = res["ppsnr_frames"] + [res["ppsnr"]]
    ident = res["identity_ppsnr_frames"] + [res["identity_ppsnr"]]
    delta = [m - i for m, i in zip(model, ident)]
    lines = [
        f"**{name}** (val pPSNR, dB; {res.get('steps', '?')} steps in {res.get('seconds', '?')} s)",
        "",
        head,
        sep,
        "| model | " + " | ".join(f"{x:.2f}" for x in model) + " |",
        "| identity | " + " | ".join(f"{x:.2f}" for x in ident) + " |",
        "| Δ | " + " | ".join(f"{x:+.2f}" for x in delta) + " |",
    ]
    if "psnr_vs_canonical_frames" in res:
        canon = res["psnr_vs_canonical_frames"] + [res["psnr_vs_canonical"]]
        lines.append("| PSNR vs canonical order | " + " | ".join(f"{x:.2f}" for x in canon) + " |")
    verdict = "PASS" if delta[-1] >= bar_db else "FAIL"
    lines += ["", f"Δ mean = {delta[-1]:+.2f} dB (bar: ≥ {bar_db:.1f} dB): **{verdict}**; "
              f"pSSIM {res['pssim']:.4f} vs identity {res['identity_pssim']:.4f}"]
    return "\n".join(lines)


def write_report(result: dict[str, Any], md_parts: list[str], args: argparse.Namespace, data_s: float,
                 t_start: float, done: bool) -> str:
    """Builds the Markdown summary and writes ``--out``/``--md`` (also mid-run: a kill keeps the phases done)."""
    lines = []
    if "ordering" in result:
        o = result["ordering"]
        cons = ", ".join(f"{k} {o['val'][k]}" for k in o["val"] if k.startswith("con"))
        cons0 = ", ".join(f"{k} {o['val_untrained'][k]}" for k in o["val_untrained"] if k.startswith("con"))
        lines.append(f"Ordering model: {o['steps']} steps in {o['seconds']} s; val {cons} (untrained: {cons0}); "
                     f"mean |u| {o['val'].get('score_abs')}")
    passed = [r.get("pass", False) for r in result["results"].values()]
    result["pass"] = bool(passed) and all(passed) and len(passed) == len(args.losses)
    result["complete"] = done
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    dev = result["gpu"] or f"CPU ({torch.get_num_threads()} threads)"
    verdict = "PASS" if result["pass"] else "FAIL"
    md = "\n\n".join([
        f"### gpu_train: MultiFrameUNet on synthetic motion blur ({dev})",
        f"{args.size}x{args.size}, T={args.frames}, {args.train_size} train / {args.val_size} val sequences, "
        f"batch {args.batch}, {args.precision}, AdamW lr {args.lr} (warm-up + cosine), clip {args.clip}; "
        f"data {data_s:.1f} s, total {result['total_seconds']} s" + ("." if done else " so far (run not finished)."),
        *lines,
        *md_parts,
        (f"Overall: **{verdict}** (every loss ≥ {args.bar_db} dB over identity)"
         + (" — a --quick smoke run: the bar is meant for the GPU run" if args.quick else "")) if done else "",
    ]).strip() + "\n"
    result["markdown"] = md
    save_outputs(result, md, args.out, args.md, indent=2)
    return md


def save_outputs(result: dict[str, Any], md: str, out: str | None, md_path: str | None, indent: int) -> None:
    """Write ``result`` as JSON to ``out`` and ``md`` to ``md_path`` (each skipped when empty)."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=indent, default=float) + "\n")
    if md_path:
        Path(md_path).parent.mkdir(parents=True, exist_ok=True)
        Path(md_path).write_text(md)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny CPU smoke settings (< 1 min)")
    parser.add_argument("--budget-s", type=float, default=330.0,
                        help="wall-clock budget of the whole run, start-up and evaluation included")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=7)
    parser.add_argument("--train-size", type=int, default=4096)
    parser.add_argument("--val-size", type=int, default=256)
    parser.add_argument("--pan", type=float, nargs=2, default=[0.03, 0.10], metavar=("MIN", "MAX"),
                        help="camera pan over the exposure, fraction of the width")
    parser.add_argument("--speed", type=float, nargs=2, default=[0.10, 0.25], metavar=("MIN", "MAX"),
                        help="object motion over the exposure, fraction of the width")
    parser.add_argument("--supersample", type=int, default=2, help="render at this factor, then box-filter")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--order-batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--order-lr", type=float, default=5e-4)
    parser.add_argument("--order-encoder", choices=["reference", "small"], default="reference")
    parser.add_argument("--alpha", type=float, default=0.2)
    parser.add_argument("--alpha-warmup-steps", type=int, default=1000)
    parser.add_argument("--losses", nargs="+", default=["naive", "hypercut"], choices=["naive", "hypercut"])
    parser.add_argument("--phase-split", type=float, nargs=3, default=[0.16, 0.37, 0.47],
                        metavar=("ORDER", "NAIVE", "HYPERCUT"), help="fractions of the training time")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default=None, help="default bf16 on GPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    parser.add_argument("--bar-db", type=float, default=2.0)
    parser.add_argument("--progress-evals", type=int, default=3, help="quick val checks (64 samples) per phase")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--md", default=None)
    args = parser.parse_args(argv)
    t_start = time.perf_counter()

    if args.quick:
        for key, value in dict(size=32, train_size=96, val_size=32, batch=8, order_batch=8, budget_s=50.0,
                               order_encoder="small", alpha_warmup_steps=20, warmup_steps=10, progress_evals=0).items():
            if parser.get_default(key) == getattr(args, key):
                setattr(args, key, value)
    if args.quick and args.threads is None and not torch.cuda.is_available():
        # Small tensors on a CPU shared with other work: one thread avoids OpenMP barrier stalls
        # (measured on the 2-core development machine: data generation 0.95 s vs 17.7 s with two).
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.precision is None:
        args.precision = "bf16" if device.type == "cuda" else "fp32"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(args.seed)
    print(f"gpu_train: device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}) "
          f"size={args.size} T={args.frames} train={args.train_size} val={args.val_size} batch={args.batch} "
          f"precision={args.precision} budget={args.budget_s:.0f}s", flush=True)

    # 1. data
    t0 = time.perf_counter()
    chunk = 256 if device.type == "cuda" else 32
    motion = {"pan": tuple(args.pan), "speed": tuple(args.speed), "supersample": args.supersample}
    train = make_dataset(args.train_size, args.size, args.frames, args.seed, device, chunk, **motion)
    val = make_dataset(args.val_size, args.size, args.frames, args.seed + 10_000, device, chunk, **motion)
    _sync(device)
    data_s = time.perf_counter() - t0
    print(f"data: {args.train_size} + {args.val_size} sequences in {data_s:.1f}s "
          f"({(train['sharp'].numel() + train['blurry'].numel()) / 2**20:.0f} MiB uint8)", flush=True)

    # Time left for training, minus evaluation and reporting (measured: a few seconds on a GPU).
    reserve = 12.0 if device.type == "cuda" else 8.0
    left = max(10.0, args.budget_s - (time.perf_counter() - t_start) - reserve)
    split = [max(0.0, f) for f in args.phase_split]
    if "hypercut" not in args.losses:
        split[0] = split[2] = 0.0
    if "naive" not in args.losses:
        split[1] = 0.0
    total = sum(split) or 1.0
    order_s, naive_s, hypercut_s = (left * f / total for f in split)

    log: list[dict[str, Any]] = []
    result: dict[str, Any] = {"bench": "gpu_train", "device": str(device),
                              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "md")},
                              "data_seconds": round(data_s, 1), "results": {}, "log": log}

    # 2. ordering model
    canonicalizer = None
    if "hypercut" in args.losses:
        ordering = build_ordering(args.order_encoder, args.seed).to(device)
        untrained = evaluate_ordering(ordering, val, device, args.precision)
        print(f"ordering: training {order_s:.0f}s ({args.order_encoder} encoder)", flush=True)
        info = train_ordering(ordering, train, args, device, order_s, log)
        info["val"] = evaluate_ordering(ordering, val, device, args.precision)
        info["val_untrained"] = untrained
        result["ordering"] = info
        print(f"ordering: {info['steps']} steps in {info['seconds']}s; val con{args.frames // 2} "
              f"{info['val'].get(f'con{args.frames // 2}')} (untrained "
              f"{untrained.get(f'con{args.frames // 2}')}), |u| {info['val']['score_abs']}", flush=True)
        canonicalizer = OrderCanonicalizer(ordering, rule="outer")
        write_report(result, [], args, data_s, t_start, done=False)

    # 3. deblurring, same initial weights for both losses
    torch.manual_seed(args.seed)
    init = MultiFrameUNet(num_frames=args.frames).state_dict()
    md_parts = []
    for name in args.losses:
        seconds = naive_s if name == "naive" else hypercut_s
        net = MultiFrameUNet(num_frames=args.frames)
        net.load_state_dict(init)
        net.to(device)
        if name == "naive":
            loss_fn: nn.Module = NaiveLoss()
        else:
            assert canonicalizer is not None
            loss_fn = HyperCUTLoss(canonicalizer, alpha=args.alpha, alpha_warmup_steps=args.alpha_warmup_steps)
        print(f"{name}: training {seconds:.0f}s", flush=True)
        try:
            info = train_deblur(net, loss_fn, train, val, args, device, seconds, name, log)
        except FloatingPointError as exc:
            print(f"{name}: FAILED {exc}", flush=True)
            result["results"][name] = {"error": str(exc)}
            md_parts.append(f"**{name} loss**: FAILED: {exc}")
            continue
        res = evaluate_deblur(net, val, device, args.precision, canonicalizer if name == "hypercut" else None)
        res.update(info)
        res["delta_db"] = res["ppsnr"] - res["identity_ppsnr"]
        res["pass"] = res["delta_db"] >= args.bar_db
        result["results"][name] = res
        md_parts.append(table(f"{name} loss", res, args.bar_db))
        print(md_parts[-1], flush=True)
        write_report(result, md_parts, args, data_s, t_start, done=False)
        del net

    final = write_report(result, md_parts, args, data_s, t_start, done=True)
    print()
    print(final, flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

"""Reproduction study: does HyperCUT ordering beat order-invariant training, per frame?

An ablation at equal compute, torch only (no Hydra, Lightning, Pillow, albumentations or PyAV), so it
runs on a bare GPU machine as well as on a CPU:

1. Data: ``bench/gpu_train.py``'s in-memory synthetic motion blur (textured background panning, 1-3
   textured objects moving, blur = mean of ``T * 5`` sub-frames in linear light) with fixed seeds:
   train ``--data-seed``, val ``+10000``, test ``+20000``. Motion statistics of the test split are
   measured (how different the outer frames are, which is what the order ambiguity costs).
2. The HyperCUT ordering model (antisymmetric ``OrderingModel``) is trained first, once, on the train
   split; its val/test Hit, Con@2, Con@3 are reported beside the untrained network's (Hit is 1 by
   construction for the antisymmetric default, so only Con@k says anything).
3. For every backbone x loss x seed: train from the same initialisation (per seed and backbone) for
   the same number of steps with the same batches (AdamW, linear warm-up + cosine, clip 1.0, bf16
   autocast + channels_last on CUDA); evaluate on the test split: per-frame pPSNR, pSSIM, plain PSNR
   in the stored order and in the ordering model's canonical order, the share of samples whose
   canonical order the prediction follows, the Con@k of the predictions under the ordering model.
4. Aggregate mean +- std over seeds; write ``--out`` (JSON), ``--md`` (tables) and ``--plot`` (PNG,
   when matplotlib is importable) and print the tables.

Concurrency (``--workers N``, default: one per backbone x loss group on CUDA, 1 on CPU): the parent
generates the data and trains the ordering model, saves both to a temporary folder and starts N
``bench/study.py --worker`` processes that share the card. With ``--steps auto`` every worker first
times a few steps of its own group under full concurrency; the parent then fixes the steps of each
backbone (the same for every loss and seed) so that the slowest worker ends inside ``--budget-s``
and records them in the JSON. Workers run seed-major and do not start a run that cannot finish in
the budget (a skipped run is listed, never silently dropped).

    PYTHONPATH=src python bench/study.py --quick                 # CPU smoke (seconds)
    PYTHONPATH=src python bench/study.py --device cpu --size 48 --steps 300 --workers 2 --threads 1 \
        --out study.json --md study.md --plot study_ppsnr.png   # CPU scale
    bash bench/study_gpu.sh                                      # GPU scale, <= 7 min on one H100
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_train as gt  # noqa: E402  (bench/gpu_train.py: data generator, ordering training, lr schedule)

from hypercut.losses import (  # noqa: E402
    HyperCUTLoss,
    HyperCUTReleasedLoss,
    NaiveLoss,
    OrderInvariantLoss,
)
from hypercut.metrics import OrderingMetrics, VideoMetrics, psnr_per_frame  # noqa: E402
from hypercut.models import JinBlur2Vid, MultiFrameUNet  # noqa: E402
from hypercut.ordering import OrderCanonicalizer, OrderingModel  # noqa: E402
from hypercut.perf import autocast, optimize_for_speed  # noqa: E402

LOSSES = ("naive", "order_invariant", "hypercut", "hypercut_released")
BACKBONES = ("multiframe_unet", "jin")
TIE_DB = 0.05  # mean-PSNR margin under which the two directions of a prediction count as a tie
NICE = {"multiframe_unet": "MultiFrameUNet", "jin": "JinBlur2Vid", "naive": "naive",
        "order_invariant": "order-invariant", "hypercut": "HyperCUT", "hypercut_released": "HyperCUT (released)"}


# ----------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_backbone(name: str, cfg: dict[str, Any]) -> nn.Module:
    frames = cfg["frames"]
    if name == "multiframe_unet":
        return MultiFrameUNet(num_frames=frames, base_channels=cfg["unet_width"], depth=cfg["unet_depth"])
    if name == "jin":
        w = cfg["jin_width"]
        if w is None:
            return JinBlur2Vid(num_frames=frames)
        return JinBlur2Vid(num_frames=frames, center_width=w, side_width=w,
                           center_refine_width=min(64, w), side_refine_width=min(32, w))
    raise ValueError(f"unknown backbone {name!r}")


def build_ordering(cfg: dict[str, Any]) -> OrderingModel:
    return gt.build_ordering(cfg["order_encoder"], cfg["data_seed"])


def build_loss(name: str, canonicalizer: OrderCanonicalizer, cfg: dict[str, Any], steps: int) -> nn.Module:
    if name == "naive":
        return NaiveLoss()
    if name == "order_invariant":
        return OrderInvariantLoss(distance="l1")
    if name == "hypercut":
        warmup = cfg["alpha_warmup_steps"]
        if warmup is None:  # a quarter of the run, at most the library default
            warmup = min(1000, max(1, steps // 4))
        return HyperCUTLoss(canonicalizer, alpha=cfg["alpha"], alpha_warmup_steps=warmup)
    if name == "hypercut_released":
        return HyperCUTReleasedLoss(canonicalizer, alpha=cfg["alpha"], distance="mse")
    raise ValueError(f"unknown loss {name!r}")


def make_optimizer(net: nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.99))


class Trainer:
    """One deblurring run: fixed steps, fixed batches (per seed), same init (per seed and backbone)."""

    def __init__(self, backbone: str, loss: str, seed: int, steps: int, cfg: dict[str, Any],
                 train: dict[str, Tensor], canonicalizer: OrderCanonicalizer, device: torch.device) -> None:
        self.cfg, self.train, self.device, self.steps = cfg, train, device, steps
        self.name = f"{backbone}/{loss}/seed{seed}"
        torch.manual_seed(1000 * seed + 17)  # the initialisation depends on the seed only
        self.net = build_backbone(backbone, cfg).to(device)
        self.module = optimize_for_speed(self.net, channels_last=device.type == "cuda")
        self.loss_fn = build_loss(loss, canonicalizer, cfg, steps).to(device)
        self.takes_step = isinstance(self.loss_fn, HyperCUTLoss)
        self.optimizer = make_optimizer(self.net, cfg)
        self.gen = torch.Generator(device=device).manual_seed(1000 * seed + 2)
        self.flip_rng = random.Random(1000 * seed + 3)
        self.step = 0
        self.last: dict[str, float] = {}
        self.clipped = 0

    def train_step(self) -> None:
        cfg, device = self.cfg, self.device
        index = torch.randint(0, self.train["blurry"].shape[0], (cfg["batch"],), generator=self.gen, device=device)
        blurry, sharp = gt.get_batch(self.train, index)
        if self.flip_rng.random() < 0.5:  # mirrored scenes: more variety, decided on the host
            blurry, sharp = blurry.flip(-1), sharp.flip(-1)
        factor = gt.lr_factor(self.step, self.step / max(1, self.steps), cfg["warmup_steps"])
        for group in self.optimizer.param_groups:
            group["lr"] = cfg["lr"] * factor
        if device.type == "cuda":
            blurry = blurry.contiguous(memory_format=torch.channels_last)
        self.net.train()
        with autocast(device, cfg["precision"]):
            pred = self.module(blurry)
            if self.takes_step:
                terms = self.loss_fn(pred.float(), sharp, step=self.step)
            else:
                terms = self.loss_fn(pred.float(), sharp)
        loss = terms["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg["clip"])
        self.optimizer.step()
        self.step += 1
        if self.step % 25 == 0 or self.step == self.steps:
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"{self.name}: loss is {value} at step {self.step}")
            self.clipped += int(float(grad_norm) > cfg["clip"])
            self.last = {k: round(float(v.detach()), 5) for k, v in terms.items()}
            self.last["grad_norm"] = round(float(grad_norm), 4)


def fit(trainer: Trainer, log_every: int = 0) -> dict[str, Any]:
    sync(trainer.device)
    start = time.perf_counter()
    while trainer.step < trainer.steps:
        trainer.train_step()
        if log_every and trainer.step % log_every == 0:
            print(f"  [{trainer.name}] step {trainer.step}/{trainer.steps} "
                  f"{time.perf_counter() - start:.1f}s loss {trainer.last.get('loss', float('nan')):.4f}", flush=True)
    sync(trainer.device)
    return {"steps": trainer.steps, "train_seconds": round(time.perf_counter() - start, 2),
            "final_terms": trainer.last, "clipped_checks": f"{trainer.clipped}/{trainer.steps // 25}"}


def time_steps(trainer: Trainer, warmup: int, measure: int) -> float:
    """Seconds per training step (after ``warmup`` steps), measured on a throwaway run."""
    trainer.steps = warmup + measure
    for _ in range(warmup):
        trainer.train_step()
    sync(trainer.device)
    start = time.perf_counter()
    for _ in range(measure):
        trainer.train_step()
    sync(trainer.device)
    return (time.perf_counter() - start) / measure


def _per_frame(out: dict[str, Tensor], name: str, frames: int) -> list[float]:
    return [float(out[f"{name}_f{i + 1}"]) for i in range(frames)]


@torch.no_grad()
def evaluate(net: nn.Module, test: dict[str, Tensor], canonicalizer: OrderCanonicalizer, cfg: dict[str, Any],
             device: torch.device) -> dict[str, Any]:
    """Test metrics of a trained net: stored order, canonical order, p-variants, order of the predictions."""
    net.eval()
    frames = cfg["frames"]
    stored = VideoMetrics(frames, data_range=1.0).to(device)
    canon = VideoMetrics(frames, data_range=1.0).to(device)
    order = OrderingMetrics(frames // 2).to(device)
    canonical_side = 0.0
    follow, reverse, tie, spread = 0.0, 0.0, 0.0, 0.0
    n = test["blurry"].shape[0]
    for start in range(0, n, cfg["eval_batch"]):
        blurry, sharp = gt.get_batch(test, torch.arange(start, min(start + cfg["eval_batch"], n), device=device))
        if device.type == "cuda":
            blurry = blurry.contiguous(memory_format=torch.channels_last)
        with autocast(device, cfg["precision"]):
            pred = net(blurry)
        pred = pred.float().clamp(0, 1).contiguous()
        stored.update(pred, sharp)
        canonical, _ = canonicalizer(sharp)
        canon.update(pred, canonical)
        # Direction per sample against the canonical order: a margin of TIE_DB separates a real
        # preference from a time-symmetric prediction (pred_t == pred_{T+1-t}), which fits both.
        fwd = psnr_per_frame(pred, canonical, 1.0).mean(1)
        rev = psnr_per_frame(pred.flip(1), canonical, 1.0).mean(1)
        follow += float((fwd > rev + TIE_DB).sum())
        reverse += float((rev > fwd + TIE_DB).sum())
        tie += float(((fwd - rev).abs() <= TIE_DB).sum())
        spread += float((pred[:, 0] - pred[:, -1]).abs().mean(dim=(1, 2, 3)).sum())
        with autocast(device, cfg["precision"]):
            u, v = canonicalizer.model(pred)
        order.update(u.float(), v.float())
        canonical_side += float((u[:, 0] > 0).sum())
    s, c, o = stored.compute(), canon.compute(), order.compute()
    return {
        "ppsnr": float(s["ppsnr"]), "ppsnr_frames": _per_frame(s, "ppsnr", frames),
        "pssim": float(s["pssim"]), "pssim_frames": _per_frame(s, "pssim", frames),
        "psnr": float(s["psnr"]), "psnr_frames": _per_frame(s, "psnr", frames),
        "psnr_canonical": float(c["psnr"]), "psnr_canonical_frames": _per_frame(c, "psnr", frames),
        "ssim_canonical": float(c["ssim"]),
        # share of samples whose best direction is the stored / the canonical order
        "follows_stored": 1.0 - float(s["reversed_frac"]),
        "follows_canonical": 1.0 - float(c["reversed_frac"]),
        "pred_order": {k: round(float(v), 4) for k, v in o.items() if k.startswith(("con", "hit"))},
        "pred_canonical_side": canonical_side / n,
        "canonical_direction": {"follows": follow / n, "reversed": reverse / n, "symmetric": tie / n},
        # mean |pred_1 - pred_T| in 1/255: 0 for a time-symmetric prediction (ground truth: motion stats)
        "pred_outer_spread_255": round(255 * spread / n, 2),
    }


@torch.no_grad()
def identity_and_motion(test: dict[str, Tensor], canonicalizer: OrderCanonicalizer, cfg: dict[str, Any],
                        device: torch.device) -> dict[str, Any]:
    """Identity baseline (blurry repeated T times) and motion statistics of the test split."""
    frames = cfg["frames"]
    ident = VideoMetrics(frames, data_range=1.0).to(device)
    reverse = VideoMetrics(frames, data_range=1.0).to(device)  # the ground truth reversed: the cost of a wrong order
    # The best time-symmetric prediction (x_t + x_{T+1-t}) / 2: what a net that cannot choose an order
    # converges to at best (an order-invariant loss from a symmetric initialisation cannot leave it).
    symmetric = VideoMetrics(frames, data_range=1.0).to(device)
    order = OrderingMetrics(frames // 2).to(device)
    n = test["blurry"].shape[0]
    diff_sum, moving_sum, flipped_sum = 0.0, 0.0, 0.0
    for start in range(0, n, cfg["eval_batch"]):
        blurry, sharp = gt.get_batch(test, torch.arange(start, min(start + cfg["eval_batch"], n), device=device))
        ident.update(blurry.unsqueeze(1).expand_as(sharp).contiguous(), sharp)
        reverse.update(sharp.flip(1).contiguous(), sharp)
        symmetric.update(0.5 * (sharp + sharp.flip(1)), sharp)
        outer = (sharp[:, 0] - sharp[:, -1]).abs()  # (B, 3, H, W)
        diff_sum += float(outer.mean(dim=(1, 2, 3)).sum())
        moving_sum += float((outer.amax(dim=1) > 8 / 255).float().mean(dim=(1, 2)).sum())
        with autocast(device, cfg["precision"]):
            u, v = canonicalizer.model(sharp)
        order.update(u.float(), v.float())
        _, flipped = canonicalizer(sharp)
        flipped_sum += float(flipped.float().sum())
    i, r, sym = ident.compute(), reverse.compute(), symmetric.compute()
    return {
        "identity": {"ppsnr": float(i["ppsnr"]), "ppsnr_frames": _per_frame(i, "ppsnr", frames),
                     "pssim": float(i["pssim"]), "pssim_frames": _per_frame(i, "pssim", frames),
                     "psnr": float(i["psnr"]), "psnr_frames": _per_frame(i, "psnr", frames)},
        "motion": {
            "mean_abs_outer_diff_255": round(255 * diff_sum / n, 2),
            "moving_pixel_frac_outer": round(moving_sum / n, 4),
            # the middle frame of the reversed ground truth is the ground truth itself (inf dB): left out
            "reversed_gt_psnr_frames": [round(x, 2) if math.isfinite(x) else None for x in _per_frame(r, "psnr", frames)],
            "reversed_gt_psnr_outer": round(0.5 * (float(r["psnr_f1"]) + float(r[f"psnr_f{frames}"])), 2),
            "canonical_flipped_frac": round(flipped_sum / n, 4),
            "symmetric_oracle_psnr_frames": [round(x, 2) for x in _per_frame(sym, "psnr", frames)],
            "symmetric_oracle_psnr": round(float(sym["psnr"]), 2),
            "pan_range": cfg["pan"], "speed_range": cfg["speed"],
        },
        "test_gt_order": {k: round(float(v), 4) for k, v in order.compute().items()},
    }


# ----------------------------------------------------------------------------------------------------
# Runs (in-process or in worker processes)
# ----------------------------------------------------------------------------------------------------
def run_one(backbone: str, loss: str, seed: int, steps: int, cfg: dict[str, Any], train: dict[str, Tensor],
            test: dict[str, Tensor], canonicalizer: OrderCanonicalizer, device: torch.device) -> dict[str, Any]:
    record: dict[str, Any] = {"backbone": backbone, "loss": loss, "seed": seed, "steps": steps,
                              "batch": cfg["batch"], "size": cfg["size"], "device": device_name(device)}
    t0 = time.perf_counter()
    trainer = Trainer(backbone, loss, seed, steps, cfg, train, canonicalizer, device)
    record["params"] = sum(p.numel() for p in trainer.net.parameters())
    try:
        record.update(fit(trainer, log_every=cfg["log_every"]))
    except FloatingPointError as exc:
        record.update({"status": "nan", "error": str(exc), "wall_seconds": round(time.perf_counter() - t0, 2)})
        return record
    t1 = time.perf_counter()
    record.update(evaluate(trainer.net, test, canonicalizer, cfg, device))
    record["eval_seconds"] = round(time.perf_counter() - t1, 2)
    record["wall_seconds"] = round(time.perf_counter() - t0, 2)
    record["status"] = "ok"
    return record


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''})"


def plan_runs(cfg: dict[str, Any]) -> list[tuple[str, str, int]]:
    """Seed-major: a budget cut loses whole seeds, never one loss of a seed."""
    return [(b, loss, s) for s in cfg["seeds"] for b in cfg["backbones"] for loss in cfg["losses"]]


def choose_steps(step_times: dict[str, float], assignment: list[list[str]], cfg: dict[str, Any],
                 available_s: float) -> dict[str, int]:
    """Steps per backbone (same for every loss and seed) so that the slowest worker fits ``available_s``.

    Every backbone gets the same wall time per run for its slowest loss: ``steps_b = c / max_l t(b, l)``,
    ``c`` the largest value for which every worker's total ``n_seeds * sum steps * t`` fits.
    """
    slowest = {b: max(t for g, t in step_times.items() if g.split("/")[0] == b) for b in cfg["backbones"]}
    seeds = len(cfg["seeds"])
    load = max(seeds * sum(step_times.get(g, 0.0) / slowest[g.split("/")[0]] for g in groups)
               for groups in assignment if groups)
    c = available_s / load
    steps = {}
    for b in cfg["backbones"]:
        s = int(c / slowest[b])
        s = s - s % 10 if s >= 20 else s
        steps[b] = max(cfg["min_steps"], min(cfg["max_steps"], s))
    return steps


def estimate_run_s(backbone: str, loss: str, steps: dict[str, int], step_times: dict[str, float]) -> float:
    return steps[backbone] * step_times.get(f"{backbone}/{loss}", 0.0)


def run_groups_inprocess(cfg: dict[str, Any], train: dict[str, Tensor], test: dict[str, Tensor],
                         canonicalizer: OrderCanonicalizer, device: torch.device, deadline: float) -> dict[str, Any]:
    step_times: dict[str, float] = {}
    if cfg["steps"] == "auto":
        for b in cfg["backbones"]:
            for loss in cfg["losses"]:
                trainer = Trainer(b, loss, 99, 1, cfg, train, canonicalizer, device)
                step_times[f"{b}/{loss}"] = time_steps(trainer, cfg["calib_warmup"], cfg["calib_steps"])
        groups = [f"{b}/{loss}" for b in cfg["backbones"] for loss in cfg["losses"]]
        steps = choose_steps(step_times, [groups], cfg, (deadline - time.perf_counter()) * cfg["safety"])
    else:
        steps = {b: int(cfg["steps"]) for b in cfg["backbones"]}
    runs = []
    for b, loss, s in plan_runs(cfg):
        estimate = estimate_run_s(b, loss, steps, step_times)
        if time.perf_counter() + estimate > deadline:
            runs.append({"backbone": b, "loss": loss, "seed": s, "steps": steps[b], "status": "skipped (budget)"})
            continue
        print(f"run {b}/{loss}/seed{s}: {steps[b]} steps", flush=True)
        runs.append(run_one(b, loss, s, steps[b], cfg, train, test, canonicalizer, device))
        print(f"  -> {summary_line(runs[-1])}", flush=True)
    return {"steps": steps, "step_times": step_times, "runs": runs, "workers": 1}


def summary_line(r: dict[str, Any]) -> str:
    if r.get("status") != "ok":
        return f"{r['backbone']}/{r['loss']}/seed{r['seed']}: {r.get('status')} {r.get('error', '')}"
    f = r["ppsnr_frames"]
    return (f"{r['backbone']}/{r['loss']}/seed{r['seed']}: pPSNR {r['ppsnr']:.2f} (f1 {f[0]:.2f}, f{len(f)} {f[-1]:.2f}) "
            f"PSNR(canon) {r['psnr_canonical']:.2f} follows canon {r['follows_canonical']:.2f} "
            f"[{r['steps']} steps, {r['wall_seconds']:.0f}s]")


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)


def _load_shared(workdir: Path, device: torch.device, cfg: dict[str, Any]
                 ) -> tuple[dict[str, Tensor], dict[str, Tensor], OrderCanonicalizer]:
    blob = torch.load(workdir / "data.pt", map_location=device, weights_only=True)
    ordering = build_ordering(cfg)
    ordering.load_state_dict(torch.load(workdir / "ordering.pt", map_location="cpu", weights_only=True))
    canonicalizer = OrderCanonicalizer(ordering.to(device), rule="outer")
    return blob["train"], blob["test"], canonicalizer


def worker_main(workdir: Path, worker_id: int) -> None:
    """A worker process: its groups (backbone/loss), every seed, seed-major; results after every run."""
    spec = json.loads((workdir / "spec.json").read_text())
    cfg = spec["cfg"]
    groups: list[str] = spec["assignment"][worker_id]
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    train, test, canonicalizer = _load_shared(workdir, device, cfg)
    print(f"[w{worker_id}] groups {groups}; data and ordering model loaded in {time.perf_counter() - t0:.1f}s",
          flush=True)
    step_times: dict[str, float] = {}
    if cfg["steps"] == "auto":
        # Warm every group up (cuDNN autotuning, allocator), wait until every worker has, then time all
        # groups in the same wall-clock window: the step times are those of full concurrency.
        trainers = {g: Trainer(g.split("/")[0], g.split("/")[1], 99, 10**9, cfg, train, canonicalizer, device)
                    for g in groups}
        for t in trainers.values():
            for _ in range(cfg["calib_warmup"]):
                t.train_step()
        sync(device)
        (workdir / f"ready_{worker_id}").touch()
        while len(list(workdir.glob("ready_*"))) < spec["n_workers"] and not (workdir / "go").exists():
            time.sleep(0.05)
        window_end = time.perf_counter() + cfg["calib_window_s"]
        counts = {g: 0 for g in groups}
        spent = {g: 0.0 for g in groups}
        while time.perf_counter() < window_end or min(counts.values()) < 2:
            for g, t in trainers.items():
                t0 = time.perf_counter()
                t.train_step()
                sync(device)
                spent[g] += time.perf_counter() - t0
                counts[g] += 1
        step_times = {g: spent[g] / counts[g] for g in groups}
        del trainers
        _write_json(workdir / f"calib_{worker_id}.json", step_times)
        print(f"[w{worker_id}] step times " + ", ".join(f"{g} {1000 * t:.1f}ms" for g, t in step_times.items()),
              flush=True)
        plan_path = workdir / "plan.json"
        while not plan_path.exists():
            time.sleep(0.2)
        plan = json.loads(plan_path.read_text())
    else:
        plan = json.loads((workdir / "plan.json").read_text())
    steps, deadline_unix = plan["steps"], plan["deadline_unix"]
    all_times = plan.get("step_times", step_times)
    results: list[dict[str, Any]] = []
    for s in cfg["seeds"]:
        for g in groups:
            b, loss = g.split("/")
            estimate = estimate_run_s(b, loss, steps, all_times) * 1.1 + 2.0
            if time.time() + estimate > deadline_unix:
                results.append({"backbone": b, "loss": loss, "seed": s, "steps": steps[b], "status": "skipped (budget)"})
            else:
                r = run_one(b, loss, s, steps[b], cfg, train, test, canonicalizer, device)
                r["worker"] = worker_id
                results.append(r)
                print(f"[w{worker_id}] {summary_line(r)}", flush=True)
            _write_json(workdir / f"result_{worker_id}.json", results)


def run_groups_workers(cfg: dict[str, Any], train: dict[str, Tensor], test: dict[str, Tensor],
                       ordering: OrderingModel, device: torch.device, deadline: float) -> dict[str, Any]:
    groups = [f"{b}/{loss}" for b in cfg["backbones"] for loss in cfg["losses"]]
    n = min(cfg["workers"], len(groups))
    # Round robin over the backbone-major list: every worker gets a mix of backbones and losses.
    assignment: list[list[str]] = [[] for _ in range(n)]
    for i, g in enumerate(groups):
        assignment[i % n].append(g)
    workdir = Path(tempfile.mkdtemp(prefix="hypercut_study_"))
    try:
        torch.save({"train": {k: v.cpu() for k, v in train.items()},
                    "test": {k: v.cpu() for k, v in test.items()}}, workdir / "data.pt")
        torch.save({k: v.cpu() for k, v in ordering.state_dict().items()}, workdir / "ordering.pt")
        _write_json(workdir / "spec.json", {"cfg": cfg, "assignment": assignment, "n_workers": n})
        unix_deadline = time.time() + (deadline - time.perf_counter())
        if cfg["steps"] != "auto":
            steps = {b: int(cfg["steps"]) for b in cfg["backbones"]}
            _write_json(workdir / "plan.json", {"steps": steps, "deadline_unix": unix_deadline, "step_times": {}})
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        src = str(Path(__file__).resolve().parent.parent / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(workdir),
                                   "--worker-id", str(i)], env=env) for i in range(n)]
        t_spawn = time.perf_counter()
        step_times: dict[str, float] = {}
        if cfg["steps"] == "auto":
            # Wait for every live worker's step times; a worker that dies here loses its groups only.
            calib_deadline = time.perf_counter() + cfg["calib_timeout_s"]
            while True:
                pending = [i for i in range(n) if not (workdir / f"calib_{i}.json").exists()
                           and procs[i].poll() is None]
                if any(p.poll() is not None for p in procs):
                    (workdir / "go").touch()  # a dead worker never gets ready: release the barrier
                if not pending or time.perf_counter() > calib_deadline:
                    break
                time.sleep(0.2)
            alive = [i for i in range(n) if (workdir / f"calib_{i}.json").exists()]
            for i in range(n):
                if i not in alive:
                    print(f"worker {i} gave no step times (exit code {procs[i].poll()}): its groups "
                          f"{assignment[i]} are lost", flush=True)
                    if procs[i].poll() is None:
                        procs[i].terminate()
            if not alive:
                raise RuntimeError("no study worker finished its calibration (see the output above)")
            for i in alive:
                step_times.update(json.loads((workdir / f"calib_{i}.json").read_text()))
            for b in cfg["backbones"]:  # a backbone whose every worker died: any positive number
                if not any(g.startswith(b + "/") for g in step_times):
                    step_times[f"{b}/-"] = 1.0
            available = (deadline - time.perf_counter()) * cfg["safety"]
            steps = choose_steps(step_times, [assignment[i] for i in alive], cfg, available)
            print(f"calibration ({time.perf_counter() - t_spawn:.1f}s after spawn): step times "
                  + ", ".join(f"{g} {1000 * t:.1f}ms" for g, t in step_times.items())
                  + f"; {available:.0f}s available -> steps {steps}", flush=True)
            _write_json(workdir / "plan.json", {"steps": steps, "deadline_unix": unix_deadline,
                                                "step_times": step_times})
        for p in procs:
            try:
                p.wait(timeout=max(5.0, deadline - time.perf_counter() + 30.0))
            except subprocess.TimeoutExpired:
                print(f"worker pid {p.pid} ran past the budget: stopping it", flush=True)
                p.terminate()
                p.wait(timeout=10)
        runs: list[dict[str, Any]] = []
        for i in range(n):
            path = workdir / f"result_{i}.json"
            done = json.loads(path.read_text()) if path.exists() else []
            seen = {(r["backbone"], r["loss"], r["seed"]) for r in done}
            for g in assignment[i]:
                b, loss = g.split("/")
                for s in cfg["seeds"]:
                    if (b, loss, s) not in seen:
                        done.append({"backbone": b, "loss": loss, "seed": s, "steps": steps[b],
                                     "status": f"missing (worker exit code {procs[i].returncode})"})
            runs += done
        order = {key: i for i, key in enumerate(plan_runs(cfg))}
        runs.sort(key=lambda r: order[(r["backbone"], r["loss"], r["seed"])])
        return {"steps": steps, "step_times": step_times, "runs": runs, "workers": n, "assignment": assignment}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------
# Aggregation and report
# ----------------------------------------------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(runs: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    keys_frames = ("ppsnr_frames", "pssim_frames", "psnr_frames", "psnr_canonical_frames")
    keys_scalar = ("ppsnr", "pssim", "psnr", "psnr_canonical", "follows_stored", "follows_canonical",
                   "pred_canonical_side", "wall_seconds", "pred_outer_spread_255")
    agg: dict[str, Any] = {}
    for b in cfg["backbones"]:
        agg[b] = {}
        for loss in cfg["losses"]:
            ok = [r for r in runs if r["backbone"] == b and r["loss"] == loss and r.get("status") == "ok"]
            entry: dict[str, Any] = {"n": len(ok), "seeds": [r["seed"] for r in ok]}
            for k in keys_frames:
                cols = list(zip(*[r[k] for r in ok])) if ok else []
                entry[k] = [mean_std(list(c)) for c in cols]
            for k in keys_scalar:
                entry[k] = mean_std([r[k] for r in ok])
            for k in ("follows", "reversed", "symmetric"):
                entry[f"direction_{k}"] = mean_std([r["canonical_direction"][k] for r in ok])
            for k in (ok[0]["pred_order"] if ok else {}):
                entry[f"pred_{k}"] = mean_std([r["pred_order"][k] for r in ok])
            agg[b][loss] = entry
        # Paired (same seed, same init, same batches) difference HyperCUT - order-invariant.
        if "hypercut" in cfg["losses"] and "order_invariant" in cfg["losses"]:
            by_seed = {(r["loss"], r["seed"]): r for r in runs if r["backbone"] == b and r.get("status") == "ok"}
            diffs = [[h - o for h, o in zip(by_seed[("hypercut", s)]["ppsnr_frames"],
                                            by_seed[("order_invariant", s)]["ppsnr_frames"])]
                     for s in cfg["seeds"] if ("hypercut", s) in by_seed and ("order_invariant", s) in by_seed]
            if diffs:
                per_frame = [mean_std(list(c)) for c in zip(*diffs)]
                outer = [0.5 * (d[0] + d[-1]) for d in diffs]
                agg[b]["hypercut_minus_oi"] = {"ppsnr_frames": per_frame, "outer": mean_std(outer),
                                               "n": len(diffs), "meets_1db": mean_std(outer)[0] >= 1.0}
    return agg


def _fmt(ms: tuple[float, float], digits: int = 2, n: int = 2) -> str:
    m, s = ms
    if m != m:  # nan
        return "–"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if n > 1 else f"{m:.{digits}f}"


def frame_table(agg_b: dict[str, Any], ident: dict[str, Any], key: str, ident_key: str | None, cfg: dict[str, Any],
                digits: int = 2) -> list[str]:
    frames = cfg["frames"]
    mean_key = key.removesuffix("_frames")
    head = "| loss | " + " | ".join(f"f{i + 1}" for i in range(frames)) + " | mean |"
    lines = [head, "|---|" + "---|" * (frames + 1)]
    if ident_key:
        vals = ident[ident_key] + [ident[ident_key.removesuffix("_frames")]]
        lines.append("| identity (blurry ×T) | " + " | ".join(f"{v:.{digits}f}" for v in vals) + " |")
    for loss in cfg["losses"]:
        e = agg_b[loss]
        if not e["n"]:
            lines.append(f"| {NICE[loss]} | " + " | ".join("–" for _ in range(frames + 1)) + " |")
            continue
        cells = [_fmt(ms, digits, e["n"]) for ms in e[key]] + [_fmt(e[mean_key], digits, e["n"])]
        lines.append(f"| {NICE[loss]} (n={e['n']}) | " + " | ".join(cells) + " |")
    return lines


def render_markdown(result: dict[str, Any]) -> str:
    cfg, agg = result["cfg"], result["aggregate"]
    ident = result["test_stats"]["identity"]
    motion = result["test_stats"]["motion"]
    o = result["ordering"]
    k = cfg["frames"] // 2
    cons = [f"con{i}" for i in range(2, k + 1)]
    out = [f"### Study: {result['device']}, {cfg['size']}×{cfg['size']}, T={cfg['frames']}, "
           f"batch {cfg['batch']}, {cfg['precision']}",
           "",
           f"Data: {cfg['train_size']} train / {cfg['val_size']} val / {cfg['test_size']} test sequences "
           f"(seeds {cfg['data_seed']}, +10000, +20000), camera pan {cfg['pan']}, object speed {cfg['speed']} "
           f"(fractions of the width over the exposure); generated in {result['data_seconds']} s. "
           f"Total wall time {result['total_seconds']} s.",
           "",
           f"**Ordering model** ({cfg['order_encoder']} encoder, antisymmetric: Hit = 1 by construction): "
           f"{o['steps']} steps of batch {cfg['order_batch']} in {o['seconds']} s.",
           "",
           "| ordering net | split | Hit | " + " | ".join(f"Con@{c[3:]}" for c in cons) + " | mean abs score |",
           "|---|---|---|" + "---|" * len(cons) + "---|"]
    for name, split, d in (("untrained", "val", o["val_untrained"]), ("trained", "val", o["val"]),
                           ("trained", "test", result["test_stats"]["test_gt_order"])):
        out.append(f"| {name} | {split} | {d['hit']:.3f} | " + " | ".join(f"{d[c]:.3f}" for c in cons)
                   + f" | {d['score_abs']:.3g} |")
    out += ["", f"Motion (test): mean |x_1 − x_T| = {motion['mean_abs_outer_diff_255']} / 255; "
                f"{100 * motion['moving_pixel_frac_outer']:.1f} % of pixels change by > 8/255 between the outer frames; "
                f"PSNR of the reversed ground truth (the cost of a wrong order) per frame "
                f"{motion['reversed_gt_psnr_frames']}; the ordering model flips "
                f"{100 * motion['canonical_flipped_frac']:.1f} % of the test sequences "
                f"(ground-truth mean abs(x₁ − x_T) = {motion['mean_abs_outer_diff_255']} / 255 is what the last "
                f"column of the order tables compares with). The best time-symmetric prediction "
                f"(x_t + x_(T+1−t)) / 2 scores {motion['symmetric_oracle_psnr_frames']} dB per frame "
                f"(an upper bound for any net that does not commit to an order).", ""]
    steps = result["plan"]["steps"]
    out.append("Steps per run (same for every loss and seed): "
               + ", ".join(f"{NICE[b]} {steps[b]}" for b in cfg["backbones"])
               + (f"; chosen from step times measured under concurrency ({result['plan']['workers']} workers)"
                  if result["plan"]["step_times"] else "") + ".")
    for b in cfg["backbones"]:
        a = agg[b]
        out += ["", f"#### {NICE[b]} — test pPSNR per frame (dB, mean ± std over seeds)", ""]
        out += frame_table(a, ident, "ppsnr_frames", "ppsnr_frames", cfg)
        out += ["", f"#### {NICE[b]} — test pSSIM per frame", ""]
        out += frame_table(a, ident, "pssim_frames", "pssim_frames", cfg, digits=4)
        out += ["", f"#### {NICE[b]} — plain PSNR per frame in the ordering model's canonical order (dB)", ""]
        out += frame_table(a, ident, "psnr_canonical_frames", "psnr_frames", cfg)
        out += ["", "Identity row: stored order (the blurry input has no order).", "",
                f"#### {NICE[b]} — order of the predictions", "",
                f"| loss | pPSNR − PSNR(canonical) | PSNR (stored order) | follows canonical order "
                f"| reversed | symmetric (±{TIE_DB} dB) | mean abs(pred₁ − pred_T) ×255 "
                f"| pred. on canonical side (u₀ > 0) | pred. " + " | pred. ".join(f"Con@{c[3:]}" for c in cons) + " |",
                "|---|---|---|---|---|---|---|---|" + "---|" * len(cons)]
        for loss in cfg["losses"]:
            e = a[loss]
            if not e["n"]:
                continue
            gap = e["ppsnr"][0] - e["psnr_canonical"][0]
            out.append(f"| {NICE[loss]} | {gap:.2f} | {_fmt(e['psnr'], 2, e['n'])} | "
                       f"{_fmt(e['direction_follows'], 3, e['n'])} | {_fmt(e['direction_reversed'], 3, e['n'])} | "
                       f"{_fmt(e['direction_symmetric'], 3, e['n'])} | {_fmt(e['pred_outer_spread_255'], 1, e['n'])} | "
                       f"{_fmt(e['pred_canonical_side'], 3, e['n'])} | "
                       + " | ".join(_fmt(e.get(f"pred_{c}", (math.nan, 0)), 3, e["n"]) for c in cons) + " |")
        if "hypercut_minus_oi" in a:
            d = a["hypercut_minus_oi"]
            out += ["", f"HyperCUT − order-invariant, paired by seed (n={d['n']}), pPSNR per frame: "
                    + ", ".join(f"{m:+.2f}" for m, _ in d["ppsnr_frames"])
                    + f"; outer frames (mean of f1, f{cfg['frames']}): {d['outer'][0]:+.2f} ± {d['outer'][1]:.2f} dB "
                    f"→ the ≥ 1.0 dB bar is **{'met' if d['meets_1db'] else 'not met'}**."]
    out += ["", "#### Runs", "", "| backbone | loss | seed | steps | batch | size | params | train s | wall s | "
            "device | final loss | status |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        final = r.get("final_terms", {}).get("loss")
        out.append(f"| {NICE[r['backbone']]} | {NICE[r['loss']]} | {r['seed']} | {r.get('steps')} | {cfg['batch']} | "
                   f"{cfg['size']} | {r.get('params', '–')} | {r.get('train_seconds', '–')} | "
                   f"{r.get('wall_seconds', '–')} | {r.get('device', '–')} | "
                   f"{'–' if final is None else f'{final:.4f}'} | {r.get('status')} |")
    return "\n".join(out) + "\n"


def plot(result: dict[str, Any], path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not importable: no plot"
    cfg, agg = result["cfg"], result["aggregate"]
    ident = result["test_stats"]["identity"]
    frames = list(range(1, cfg["frames"] + 1))
    fig, axes = plt.subplots(1, len(cfg["backbones"]), figsize=(5.5 * len(cfg["backbones"]), 4), squeeze=False)
    for ax, b in zip(axes[0], cfg["backbones"]):
        ax.plot(frames, ident["ppsnr_frames"], "k--", label="identity (blurry)")
        for loss in cfg["losses"]:
            e = agg[b][loss]
            if not e["n"]:
                continue
            ax.errorbar(frames, [m for m, _ in e["ppsnr_frames"]], yerr=[s for _, s in e["ppsnr_frames"]],
                        marker="o", capsize=3, label=f"{NICE[loss]} (n={e['n']})")
        ax.set_title(f"{NICE[b]} ({result['plan']['steps'][b]} steps)")
        ax.set_xlabel("frame")
        ax.set_ylabel("test pPSNR (dB)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{result['device']}, {cfg['size']}×{cfg['size']}, batch {cfg['batch']}, mean ± std over seeds",
                 fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ----------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="tiny CPU smoke settings (seconds)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--frames", type=int, default=7)
    p.add_argument("--train-size", type=int, default=4096)
    p.add_argument("--val-size", type=int, default=256)
    p.add_argument("--test-size", type=int, default=512)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--pan", type=float, nargs=2, default=[0.03, 0.10], metavar=("MIN", "MAX"))
    p.add_argument("--speed", type=float, nargs=2, default=[0.10, 0.25], metavar=("MIN", "MAX"))
    p.add_argument("--steps", default=None, help="training steps per run (every backbone), or 'auto' "
                   "(the default: calibrated to fit --budget-s)")
    p.add_argument("--min-steps", type=int, default=20)
    p.add_argument("--max-steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    p.add_argument("--unet-width", type=int, default=32, help="MultiFrameUNet base_channels")
    p.add_argument("--unet-depth", type=int, default=3)
    p.add_argument("--jin-width", type=int, default=None,
                   help="JinBlur2Vid centre and side width (default: the full 18 M model, 144/128)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=0.2)
    p.add_argument("--alpha-warmup-steps", type=int, default=None, help="default: a quarter of the run, <= 1000")
    p.add_argument("--order-encoder", choices=["reference", "small"], default="reference")
    p.add_argument("--order-batch", type=int, default=32)
    p.add_argument("--order-lr", type=float, default=5e-4)
    p.add_argument("--order-seconds", type=float, default=45.0, help="training time of the ordering model")
    p.add_argument("--precision", choices=["bf16", "fp32"], default=None, help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget of the whole study")
    p.add_argument("--reserve-s", type=float, default=None, help="kept for evaluation and the report")
    p.add_argument("--safety", type=float, default=0.85, help="fraction of the time left that runs may plan on")
    p.add_argument("--workers", type=int, default=None, help="concurrent worker processes (default: one per "
                   "backbone x loss group on CUDA, 1 = in-process on CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument("--calib-warmup", type=int, default=5)
    p.add_argument("--calib-steps", type=int, default=15, help="timed steps (in-process calibration)")
    p.add_argument("--calib-window-s", type=float, default=8.0,
                   help="workers: every worker times its groups in the same window of this length")
    p.add_argument("--calib-timeout-s", type=float, default=150.0, help="longest wait for the workers' step times")
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--log-every", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON")
    p.add_argument("--md", default=None, help="Markdown tables")
    p.add_argument("--plot", default=None, help="PNG of per-frame pPSNR per loss")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-id", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    explicit_steps = args.steps is not None
    if args.quick:
        quick = dict(device="cpu", size=32, train_size=48, val_size=16, test_size=16, steps="4", batch=4,
                     seeds=[0], losses=["naive", "hypercut"], unet_width=8, unet_depth=2, jin_width=8,
                     order_encoder="small", order_batch=4, order_seconds=1.0, warmup_steps=2, eval_batch=16,
                     workers=1, threads=1, budget_s=120.0)
        for key, value in quick.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    if explicit_steps and args.steps != "auto":
        int(args.steps)  # fail early on a typo
    if args.steps is None:
        args.steps = "auto"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.worker:
        worker_main(Path(args.worker), args.worker_id)
        return {}
    t_start = time.perf_counter()
    deadline = t_start + args.budget_s
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    workers = args.workers if args.workers is not None else (
        len(args.backbones) * len(args.losses) if device.type == "cuda" else 1)
    cfg: dict[str, Any] = {
        "device": str(device), "size": args.size, "frames": args.frames, "train_size": args.train_size,
        "val_size": args.val_size, "test_size": args.test_size, "data_seed": args.data_seed,
        "pan": list(args.pan), "speed": list(args.speed), "steps": args.steps, "min_steps": args.min_steps,
        "max_steps": args.max_steps, "batch": args.batch, "seeds": args.seeds, "losses": args.losses,
        "backbones": args.backbones, "unet_width": args.unet_width, "unet_depth": args.unet_depth,
        "jin_width": args.jin_width, "lr": args.lr, "weight_decay": args.weight_decay,
        "warmup_steps": args.warmup_steps, "clip": args.clip, "alpha": args.alpha,
        "alpha_warmup_steps": args.alpha_warmup_steps, "order_encoder": args.order_encoder,
        "order_batch": args.order_batch, "order_lr": args.order_lr, "order_seconds": args.order_seconds,
        "precision": precision, "budget_s": args.budget_s, "safety": args.safety, "workers": workers,
        "threads": args.threads, "calib_warmup": args.calib_warmup, "calib_steps": args.calib_steps, "calib_window_s": args.calib_window_s,
        "calib_timeout_s": args.calib_timeout_s,
        "eval_batch": args.eval_batch, "log_every": args.log_every, "optimizer": "AdamW(0.9, 0.99), "
        "linear warm-up + cosine to 2 %, clip-norm", "loss_settings": {
            "order_invariant": "L1 on |sum| and |difference| of symmetric pairs + middle frame",
            "hypercut": "canonicalise GT (rule outer) + Charbonnier + alpha * hinge(-u), "
                        "gradient-ratio cap 0.5, alpha warm-up",
            "hypercut_released": "order-invariant (MSE) + alpha * softplus(+u)"}}
    dev_name = device_name(device)
    print(f"study: {dev_name}; {args.size}x{args.size} batch {args.batch} {precision}; "
          f"{len(args.backbones)} backbones x {len(args.losses)} losses x {len(args.seeds)} seeds; "
          f"workers {workers}; budget {args.budget_s:.0f}s", flush=True)

    # 1. data
    t0 = time.perf_counter()
    chunk = 256 if device.type == "cuda" else 32
    motion = {"pan": tuple(args.pan), "speed": tuple(args.speed)}
    train = gt.make_dataset(args.train_size, args.size, args.frames, args.data_seed, device, chunk, **motion)
    val = gt.make_dataset(args.val_size, args.size, args.frames, args.data_seed + 10_000, device, chunk, **motion)
    test = gt.make_dataset(args.test_size, args.size, args.frames, args.data_seed + 20_000, device, chunk, **motion)
    sync(device)
    data_s = round(time.perf_counter() - t0, 1)
    print(f"data: {args.train_size}/{args.val_size}/{args.test_size} sequences in {data_s}s", flush=True)

    # 2. ordering model, trained once and frozen for every run
    torch.manual_seed(args.data_seed)
    ordering = build_ordering(cfg).to(device)
    untrained = gt.evaluate_ordering(ordering, val, device, precision)
    order_args = SimpleNamespace(order_lr=args.order_lr, order_batch=args.order_batch, seed=args.data_seed,
                                 precision=precision)
    info = gt.train_ordering(ordering, train, order_args, device, args.order_seconds, [])
    info["val"] = gt.evaluate_ordering(ordering, val, device, precision)
    info["val_untrained"] = untrained
    canonicalizer = OrderCanonicalizer(ordering, rule="outer")
    print(f"ordering: {info['steps']} steps in {info['seconds']}s; val {info['val']} (untrained {untrained})",
          flush=True)
    test_stats = identity_and_motion(test, canonicalizer, cfg, device)
    print(f"test: identity pPSNR {test_stats['identity']['ppsnr']:.2f}; motion {test_stats['motion']}", flush=True)

    # 3. deblurring runs
    reserve = args.reserve_s if args.reserve_s is not None else (15.0 if device.type == "cuda" else 5.0)
    run_deadline = deadline - reserve
    del val
    if workers > 1:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        plan = run_groups_workers(cfg, train, test, ordering, device, run_deadline)
    else:
        plan = run_groups_inprocess(cfg, train, test, canonicalizer, device, run_deadline)
    runs = plan.pop("runs")

    # 4. report
    result: dict[str, Any] = {
        "bench": "study", "device": dev_name, "cfg": cfg, "data_seconds": data_s, "ordering": info,
        "test_stats": test_stats, "plan": plan, "runs": runs,
        "aggregate": aggregate(runs, cfg), "total_seconds": round(time.perf_counter() - t_start, 1),
        "complete": all(r.get("status") == "ok" for r in runs),
    }
    md = render_markdown(result)
    result["markdown"] = md
    if args.plot:
        note = plot(result, args.plot)
        if note:
            print(note, flush=True)
            result["plot_note"] = note
    gt.save_outputs(result, md, args.out, args.md, indent=1)
    print()
    print(md, flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

"""Shared helpers of the benchmark scripts: device choice, timing, peak memory, FLOPs, JSON, tables.

Timing: warm-up calls first (cuDNN autotuning, oneDNN primitive caches, lazy CUDA init), then
``repeats`` timed calls, each ``inner`` back-to-back calls followed by one device synchronisation; the
figure reported is the median per call. ``max_seconds`` stops a slow case early (after at least
``min_repeats``), which keeps CPU runs short.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (tensors only). On the CPU, ``tracemalloc``
sees only Python's allocator, not torch's tensor buffers, so the resident set size is sampled from
``/proc/self/statm`` every few milliseconds instead; the figure is the peak RSS during the case minus
the RSS before it (an estimate: the allocator may keep freed memory).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "BF16_PEAK_TFLOPS",
    "PeakMemory",
    "add_common_args",
    "bf16_peak_tflops",
    "count_flops",
    "machine_info",
    "pick_device",
    "print_table",
    "synchronize",
    "time_call",
    "time_interleaved",
    "write_json",
]

# Dense bf16 tensor-core peak (no sparsity), TFLOP/s, from the vendors' data sheets. The first
# matching substring of the device name wins, so the more specific names come first.
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM5 / "H100 80GB HBM3"
    ("H200", 989.4),  # same GH100 chip and clocks as the H100 SXM
    ("GH200", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
    ("L4", 121.0),
)


def bf16_peak_tflops(device_name: str | None) -> float | None:
    """The dense bf16 peak of a GPU in TFLOP/s by its name, or ``None`` when unknown."""
    if not device_name:
        return None
    for key, value in BF16_PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    return device


def synchronize(device: torch.device) -> None:
    """Waits for the queued kernels of ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], Any],
    device: torch.device,
    warmup: int = 2,
    repeats: int = 10,
    inner: int = 1,
    min_repeats: int = 2,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Times ``fn`` and returns ``{"median_s", "min_s", "mean_s", "repeats", "inner", "times_s"}``.

    Every figure is per call of ``fn``. Each repeat runs ``fn`` ``inner`` times, then synchronises.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        synchronize(device)
        times.append((time.perf_counter() - t0) / inner)
        if max_seconds is not None and len(times) >= min_repeats and time.perf_counter() - start > max_seconds:
            break
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "mean_s": statistics.fmean(times),
        "repeats": len(times),
        "inner": inner,
        "times_s": [round(t, 6) for t in times],
    }


def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    device: torch.device,
    repeats: int = 10,
    inner: int = 1,
    min_repeats: int = 2,
    max_seconds: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Times several (already warmed-up) callables in turn, A B C A B C ..., so that a change in the
    machine's load during the run affects all of them alike; returns :func:`time_call`'s dict per name.

    ``max_seconds`` bounds the whole run (after at least ``min_repeats`` rounds).
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    for round_ in range(max(1, repeats)):
        for name, fn in fns.items():
            synchronize(device)
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            synchronize(device)
            times[name].append((time.perf_counter() - t0) / inner)
        if max_seconds is not None and round_ + 1 >= min_repeats and time.perf_counter() - start > max_seconds:
            break
    return {
        name: {
            "median_s": statistics.median(t),
            "min_s": min(t),
            "mean_s": statistics.fmean(t),
            "repeats": len(t),
            "inner": inner,
            "interleaved": True,
            "times_s": [round(x, 6) for x in t],
        }
        for name, t in times.items()
    }


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, Linux KiB


class PeakMemory(contextlib.AbstractContextManager["PeakMemory"]):
    """Peak memory of the code inside ``with PeakMemory(device) as mem:``; read ``mem.result()``.

    CUDA: ``max_memory_allocated`` (reset on entry), ``peak_mb`` and the increase over the memory
    allocated on entry, ``delta_mb``. CPU: the peak resident set size sampled every ``interval_s``
    (``peak_mb``) and its increase over the RSS on entry (``delta_mb``).
    """

    def __init__(self, device: torch.device, interval_s: float = 0.002) -> None:
        self.device = device
        self.interval_s = interval_s
        self.base = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = self.peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.peak = max(self.peak, _rss_bytes())

    def result(self) -> dict[str, Any]:
        kind = "cuda_max_allocated" if self.device.type == "cuda" else "cpu_rss_sampled"
        return {
            "peak_mb": round(self.peak / 2**20, 1),
            "delta_mb": round((self.peak - self.base) / 2**20, 1),
            "memory_kind": kind,
        }


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the matrix/convolution operators that ``fn`` runs (``FlopCounterMode``; 1 MAC = 2 FLOPs).

    The call really runs (use it for a warm-up call). Element-wise operators are not counted, as in
    every "model FLOPs" convention; a backward pass inside ``fn`` is counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, load, torch, and the GPU if there is one."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_threads": torch.get_num_threads(),
        "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu_name=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_sm_count=props.multi_processor_count,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
            bf16_peak_tflops_assumed=bf16_peak_tflops(props.name),
        )
    else:
        info["gpu_name"] = None
    return info


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _clean(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path | None, payload: dict[str, Any]) -> None:
    """Writes ``payload`` plus ``machine``, ``command`` and ``timestamp`` as JSON (NaN/inf as null)."""
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {
        **payload,
        "machine": machine_info(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(full), indent=2) + "\n")
    tmp.replace(path)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 0.01:
            return f"{value:.2f}"
        return f"{value:.2e}"
    return str(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], file: Any = None) -> str:
    """Prints (and returns) ``rows`` as a Markdown table of ``columns``."""
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    text = "\n".join(
        [line(list(columns)), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in cells)]
    )
    print(text, file=file or sys.stdout, flush=True)
    return text


def add_common_args(parser: Any) -> None:
    """Arguments every benchmark script takes."""
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    parser.add_argument("--out", default=None, help="write the results to this JSON file")
    parser.add_argument("--quick", action="store_true", help="smallest settings (a smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)


@contextlib.contextmanager
def cuda_settings(device: torch.device) -> Iterator[None]:
    """cuDNN autotuning on for the benchmarks (the same for every variant); restored afterwards."""
    old = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def free_memory(device: torch.device) -> None:
    """Releases cached blocks between cases so one case's peak does not count in the next."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

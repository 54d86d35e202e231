"""Fast-path helpers: channels_last weights, bf16 autocast, optional ``torch.compile`` (torch only).

These are the switches measured in ``bench/`` (see ``bench/RESULTS.md``). Each is opt-in and does not
change the numbers a model computes beyond the precision asked for:

- :func:`optimize_for_speed` puts a module's 4-D weights in ``channels_last`` (convolutions then run in
  NHWC: cuDNN's tensor-core kernels on a GPU, oneDNN's blocked kernels on a CPU) and optionally wraps
  it in ``torch.compile``;
- :func:`autocast` is ``torch.autocast`` with a string precision (``"bf16"``, ``"fp16"`` or ``"fp32"``
  = off) that does the right thing on CPU and CUDA.

Example:
    >>> import torch
    >>> from hypercut.models import MultiFrameUNet
    >>> net = optimize_for_speed(MultiFrameUNet(num_frames=3, base_channels=8, depth=1))
    >>> with autocast("cpu", "bf16"):
    ...     video = net(torch.rand(1, 3, 32, 32))
    >>> video.shape
    torch.Size([1, 3, 3, 32, 32])
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

__all__ = ["PRECISIONS", "autocast", "optimize_for_speed"]

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def optimize_for_speed(
    module: nn.Module,
    channels_last: bool = True,
    compile: bool = False,
    compile_mode: str | None = None,
) -> nn.Module:
    """Prepares a module for fast training or inference; returns the module to call.

    Args:
        module: the model. Its parameters are converted in place (``channels_last`` only changes the
            memory layout of 4-D tensors: the values, the ``state_dict`` keys and the shapes stay).
        channels_last: store 4-D weights as NHWC. A convolution follows the layout of its input or
            weight, so its activations become NHWC too.
        compile: wrap the module in ``torch.compile`` (the first call compiles: tens of seconds).
        compile_mode: ``mode`` passed to ``torch.compile`` (``None``, ``"reduce-overhead"``,
            ``"max-autotune"`` ...).

    Returns:
        ``module`` itself, or its compiled wrapper when ``compile=True`` (which shares the
        parameters, so an optimizer built on either trains both).
    """
    if channels_last:
        module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if compile:
        return torch.compile(module, mode=compile_mode)  # type: ignore[return-value]
    return module


def autocast(device: str | torch.device, precision: str = "bf16") -> contextlib.AbstractContextManager[Any]:
    """Mixed-precision context for ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...).

    Args:
        device: where the computation runs.
        precision: ``"bf16"`` or ``"fp16"`` (autocast to that dtype) or ``"fp32"`` (no autocast).

    Returns:
        A context manager (a no-op one for ``"fp32"``).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=_DTYPES[precision])


"""Import of the authors' released HyperCUT ordering checkpoints (RB2V-Street/Face/Hand).

Written from the key names and shapes of the released state dicts only (no code of theirs is used).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import Tensor

from hypercut.ordering.encoder import PairEncoder
from hypercut.ordering.hyperplane import Hyperplane

__all__ = [
    "RELEASED_ENCODER_PREFIX",
    "RELEASED_HYPERPLANE_KEY",
    "RELEASED_LAYOUT",
    "from_released_state_dict",
    "load_released_checkpoint",
    "released_layout",
]

RELEASED_ENCODER_PREFIX = "f_func.model."
RELEASED_HYPERPLANE_KEY = "hyperplane.hyperplane"

# Assumed index layout of the released ``f_func.model`` nn.Sequential (reference configuration):
#   0 ReflectionPad2d(3)   1 Conv7x7 6->32   2 act
#   3 Conv3x3/2 32->64   4 act    5 Conv 64->128   6 act    7 Conv 128->128   8 act
#   9 Conv 128->128     10 act   11 Conv 128->128 12 act
#   13..18 residual blocks, each ``conv_block`` = Sequential(pad 0, conv 1, ReLU 2, pad 3, conv 4)
#   19 global average pooling
# ``released_layout`` turns this into (released module, our module) pairs; fix it there if a real
# checkpoint disagrees. Index offsets: stem conv at 1, down conv i at 3 + 2 i, block j at 3 + 2 n_down + j.
_STEM_CONV_INDEX = 1
_FIRST_DOWN_INDEX = 3
_DOWN_STRIDE = 2  # (conv, act) per downsampling stage
_BLOCK_CONVS = (("conv_block.1", "conv1"), ("conv_block.4", "conv2"))


def released_layout(num_down: int = 5, num_res_blocks: int = 6) -> tuple[tuple[str, str], ...]:
    """Module-name table from the released ``f_func.model`` Sequential to :class:`PairEncoder`.

    Args:
        num_down: Number of stride-2 convolutions.
        num_res_blocks: Number of residual blocks.

    Returns:
        ``((released_prefix, our_prefix), ...)`` for every convolution; append ``.weight`` / ``.bias``.
        E.g. ``("f_func.model.13.conv_block.1", "blocks.0.conv1")``.
    """
    p = RELEASED_ENCODER_PREFIX
    table = [(f"{p}{_STEM_CONV_INDEX}", "stem.1")]
    for i in range(num_down):
        # our ``down`` Sequential is (conv, act) * num_down, so conv i sits at 2 i
        table.append((f"{p}{_FIRST_DOWN_INDEX + _DOWN_STRIDE * i}", f"down.{2 * i}"))
    first_block = _FIRST_DOWN_INDEX + _DOWN_STRIDE * num_down
    for j in range(num_res_blocks):
        for theirs, ours in _BLOCK_CONVS:
            table.append((f"{p}{first_block + j}.{theirs}", f"blocks.{j}.{ours}"))
    return tuple(table)


RELEASED_LAYOUT: tuple[tuple[str, str], ...] = released_layout()
"""The table of :func:`released_layout` for the reference configuration (5 down, 6 blocks)."""


def _find_prefix(state_dict: Mapping[str, Tensor]) -> str:
    for key in state_dict:
        if key.endswith(RELEASED_HYPERPLANE_KEY):
            return key[: -len(RELEASED_HYPERPLANE_KEY)]
    raise KeyError(
        f"not a released HyperCUT state dict: no key ending in {RELEASED_HYPERPLANE_KEY!r} "
        f"(first keys: {list(state_dict)[:5]})"
    )


def from_released_state_dict(state_dict: Mapping[str, Tensor]) -> tuple[PairEncoder, Hyperplane]:
    """Builds a :class:`PairEncoder` (``compat="released"``) and :class:`Hyperplane` from their weights.

    The released state dict holds ``f_func.model.<index>.weight/bias`` in the Sequential layout of
    :data:`RELEASED_LAYOUT` (optionally behind a common prefix such as ``module.``), and
    ``hyperplane.hyperplane`` with D + 1 values ``(w, b)`` that score ``d . (w + b)``; the imported
    plane is ``n = w + b``. Widths, depth and D are read from the shapes.

    Use the result with ``OrderingModel(encoder, hyperplane, antisymmetric=False)`` to get the
    released scores.

    Args:
        state_dict: The released state dict.

    Returns:
        ``(encoder, hyperplane)`` in eval mode, float32, on the CPU.

    Raises:
        KeyError: A key the layout expects is missing, or the state dict has encoder keys the layout
            does not explain (the message names them).
        ValueError: A shape does not fit the architecture.
    """
    prefix = _find_prefix(state_dict)
    sd = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    enc_keys = [k for k in sd if k.startswith(RELEASED_ENCODER_PREFIX)]
    index_re = re.compile(re.escape(RELEASED_ENCODER_PREFIX) + r"(\d+)\.(.*)")
    plain: set[int] = set()
    blocks: set[int] = set()
    for key in enc_keys:
        m = index_re.match(key)
        if m is None:
            raise KeyError(f"released state dict: unexpected encoder key {key!r}")
        (blocks if m.group(2).startswith("conv_block.") else plain).add(int(m.group(1)))
    num_down = len(plain) - 1
    num_res_blocks = len(blocks)
    if num_down < 1:
        raise KeyError(f"released state dict: found no downsampling convolutions in {enc_keys[:5]}")
    layout = released_layout(num_down, num_res_blocks)

    stem_w = sd[f"{layout[0][0]}.weight"]
    dims = [int(sd[f"{theirs}.weight"].shape[0]) for theirs, _ in layout[1 : 1 + num_down]]
    encoder = PairEncoder(
        in_channels=int(stem_w.shape[1]),
        width=int(stem_w.shape[0]),
        dims=dims,
        num_res_blocks=num_res_blocks,
        out_dim=None,
        compat="released",
    )
    ours = encoder.state_dict()
    mapped: dict[str, Tensor] = {}
    for theirs, our in layout:
        for p in ("weight", "bias"):
            src, dst = f"{theirs}.{p}", f"{our}.{p}"
            if src not in sd:
                raise KeyError(f"released state dict: missing {prefix}{src} (expected for {dst})")
            if tuple(sd[src].shape) != tuple(ours[dst].shape):
                raise ValueError(
                    f"released state dict: {prefix}{src} has shape {tuple(sd[src].shape)}, "
                    f"expected {tuple(ours[dst].shape)} for {dst}"
                )
            mapped[dst] = sd[src].detach().to(torch.float32)
    unused = sorted(set(enc_keys) - {f"{t}.{p}" for t, _ in layout for p in ("weight", "bias")})
    if unused:
        raise KeyError(f"released state dict: encoder keys not in the assumed layout: {unused}")
    encoder.load_state_dict(mapped, strict=True)

    wb = sd[RELEASED_HYPERPLANE_KEY].detach().to(torch.float32).reshape(-1)
    dim = encoder.out_dim
    if wb.numel() != dim + 1:
        raise ValueError(
            f"released state dict: {prefix}{RELEASED_HYPERPLANE_KEY} has {wb.numel()} values, "
            f"expected D + 1 = {dim + 1}"
        )
    hyperplane = Hyperplane(dim)
    hyperplane.normal.copy_(wb[:dim] + wb[dim])
    return encoder.eval(), hyperplane.eval()


_NESTED_KEYS = ("state_dict", "model", "net", "model_state_dict")


def load_released_checkpoint(path: str | os.PathLike[str]) -> tuple[PairEncoder, Hyperplane]:
    """Opens a released HyperCUT checkpoint file (``torch.load(weights_only=True)``) and imports it.

    The file may hold the state dict itself or a dict with it under ``state_dict``, ``model``,
    ``net`` or ``model_state_dict``.

    Args:
        path: The checkpoint file.

    Returns:
        ``(encoder, hyperplane)``, see :func:`from_released_state_dict`.
    """
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(
            isinstance(k, str) and k.endswith(RELEASED_HYPERPLANE_KEY) for k in obj
        ):
            nested = next((obj[k] for k in _NESTED_KEYS if isinstance(obj.get(k), Mapping)), None)
            if nested is None:
                break
            obj = nested
    if not isinstance(obj, Mapping):
        raise ValueError(f"{os.fspath(path)}: not a state dict (got {type(obj).__name__})")
    try:
        return from_released_state_dict(obj)
    except (KeyError, ValueError) as err:
        raise type(err)(f"{os.fspath(path)}: {err.args[0]}") from err

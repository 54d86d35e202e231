"""Self-describing, weights-only model files.

A weights file is a plain dictionary that :func:`torch.load` opens with ``weights_only=True`` (no
unpickling of arbitrary objects)::

    {
        "format": "hypercut-weights/1",
        "spec": {"_target_": "hypercut.models.MultiFrameUNet", "num_frames": 7, ...},
        "state_dict": {...},            # tensors only
        "metrics": {"val/ppsnr": 27.1},  # floats, optional
        "hypercut_version": "0.1.0",
    }

``spec`` is a constructor call written as data, the same shape as a Hydra node: ``_target_`` names a
class and the other keys are its keyword arguments; a keyword argument may itself be a spec (the
ordering model holds an encoder and a hyperplane). :func:`build_from_spec` rebuilds it without Hydra
and only ever imports classes from the ``hypercut`` package, so a weights file cannot name arbitrary
code to run.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import hypercut

FORMAT = "hypercut-weights/1"
_ALLOWED_PREFIX = "hypercut."


def build_from_spec(spec: Mapping[str, Any]) -> Any:
    """Construct an object from a ``{"_target_": "hypercut....", **kwargs}`` spec, recursively.

    Args:
        spec: the constructor call as data. Nested mappings that carry ``_target_`` are built first.

    Returns:
        The constructed object (usually an ``nn.Module``).

    Raises:
        ValueError: if a target lies outside the ``hypercut`` package or cannot be found.

    Example:
        >>> net = build_from_spec({"_target_": "hypercut.models.MultiFrameUNet", "num_frames": 5})
    """
    target = spec.get("_target_")
    if not isinstance(target, str) or not target.startswith(_ALLOWED_PREFIX):
        raise ValueError(f"spec._target_ must name a class inside the hypercut package, got {target!r}")
    module_name, _, attr = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"spec._target_: cannot find {target!r}: {err}") from err
    kwargs = {
        key: build_from_spec(value) if isinstance(value, Mapping) and "_target_" in value else value
        for key, value in spec.items()
        if not key.startswith("_")
    }
    return cls(**kwargs)


def spec_of(module: nn.Module, **kwargs: Any) -> dict[str, Any]:
    """The spec of ``module``'s class with the given constructor arguments.

    Use it when a model was built in Python rather than from a config; arguments left out take the
    constructor's defaults, so pass every argument that differs from them.
    """
    cls = type(module)
    public = cls.__module__.split(".")
    # Prefer the sub-package path users import from (hypercut.models.X rather than hypercut.models.unet.X).
    for depth in range(2, len(public) + 1):
        candidate = ".".join(public[:depth])
        if getattr(importlib.import_module(candidate), cls.__qualname__, None) is cls:
            return {"_target_": f"{candidate}.{cls.__qualname__}", **kwargs}
    return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **kwargs}


def save_weights(
    module: nn.Module,
    path: str | Path,
    spec: Mapping[str, Any],
    metrics: Mapping[str, float] | None = None,
) -> Path:
    """Write a self-describing weights-only file for ``module``.

    Args:
        module: the model whose ``state_dict`` is saved (moved to CPU).
        path: destination file (parents are created).
        spec: how to rebuild ``module`` (see :func:`build_from_spec`); checked by rebuilding it.
        metrics: optional scalar results to keep beside the weights.

    Returns:
        The path written.
    """
    _check_plain(spec, "spec")
    rebuilt = build_from_spec(spec)
    if not isinstance(rebuilt, nn.Module) or type(rebuilt) is not type(module):
        raise ValueError(f"spec builds {type(rebuilt).__name__}, not {type(module).__name__}")
    payload = {
        "format": FORMAT,
        "spec": dict(spec),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "hypercut_version": hypercut.__version__,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def read_weights(path: str | Path) -> dict[str, Any]:
    """Open a weights file safely (``weights_only=True``) and check its format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: format: expected {FORMAT!r}, found {found!r} (a Lightning .ckpt? "
                         "convert it with `hypercut-export`)")
    for key in ("spec", "state_dict"):
        if key not in payload:
            raise ValueError(f"{path}: missing field {key!r}")
    return payload


def load_pretrained(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from a weights file written by :func:`save_weights` (no Hydra needed).

    Args:
        path: the weights file.
        map_location: device for the returned model.

    Returns:
        The model in eval mode, with ``model.hypercut_metrics`` holding the stored metrics.

    Example:
        >>> net = load_pretrained("runs/demo/deblur.pt")            # doctest: +SKIP
        >>> video = net(blurry)                                     # (B, T, 3, H, W)  # doctest: +SKIP
    """
    payload = read_weights(path)
    model = build_from_spec(payload["spec"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{path}: state_dict does not fit spec {payload['spec'].get('_target_')}: {err}") from err
    model.hypercut_metrics = dict(payload.get("metrics", {}))
    return model.to(map_location).eval()


def _check_plain(value: Any, where: str) -> None:
    """Reject anything ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: keys must be strings, got {key!r}")
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (bool, int, float, str))):
        raise TypeError(f"{where}: {type(value).__name__} cannot be stored in a weights-only file")


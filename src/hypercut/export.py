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
ordering model holds an encoder and a hyperplane). :func:`build_from_spec` rebuilds it without Hydra.
A ``_target_`` is only ever looked up in :data:`MODEL_CLASSES`, the explicit list of the library's
model classes; nothing is imported by name, so a weights file (or a checkpoint's hyper-parameters)
cannot name a function or any other code to run. The whole spec is checked before anything is built.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import hypercut
from hypercut.models import (
    JinBlur2Vid,
    MotionWarpNet,
    MultiFrameUNet,
    NAFMultiFrame,
    PurohitBlur2Vid,
    UNetConvLSTM,
)
from hypercut.ordering import Hyperplane, MotionPairEncoder, OrderingModel, PairEncoder

FORMAT = "hypercut-weights/1"

MODEL_CLASSES: tuple[type[nn.Module], ...] = (
    # deblurring backbones
    JinBlur2Vid,
    MotionWarpNet,
    MultiFrameUNet,
    NAFMultiFrame,
    PurohitBlur2Vid,
    UNetConvLSTM,
    # the ordering model and its parts
    OrderingModel,
    PairEncoder,
    MotionPairEncoder,
    Hyperplane,
)
"""The only classes a spec may name. To make a new model loadable from weights files, import its
class here and add it to this tuple; it is then found under ``<defining module>.<Name>`` and under the
sub-package that exports it (``hypercut.models.<Name>``)."""


def _target_names(classes: tuple[type[nn.Module], ...]) -> dict[str, type[nn.Module]]:
    """``_target_`` strings accepted for each class: its defining module and each enclosing package
    that exports it (``hypercut.models.MultiFrameUNet``), so the names are also valid Hydra targets."""
    names: dict[str, type[nn.Module]] = {}
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"MODEL_CLASSES: {cls!r} is not an nn.Module subclass")
        parts = cls.__module__.split(".")
        for depth in range(2, len(parts) + 1):
            package = ".".join(parts[:depth])
            if getattr(sys.modules.get(package), cls.__qualname__, None) is cls:
                names[f"{package}.{cls.__qualname__}"] = cls
    return names


def allowed_targets() -> dict[str, type[nn.Module]]:
    """Every ``_target_`` a spec may use, mapped to its class (built from :data:`MODEL_CLASSES`)."""
    return _target_names(MODEL_CLASSES)


def check_spec(spec: Any, source: str | Path = "spec", where: str = "spec") -> None:
    """Check a spec without building anything.

    Args:
        spec: the constructor call as data.
        source: the file the spec comes from, for error messages.
        where: the key path of ``spec`` inside that file, for error messages.

    Raises:
        ValueError: ``"{source}: {where}._target_: ..."`` when a target anywhere in the spec (nested
            specs and specs inside lists included) is not in :data:`MODEL_CLASSES`, or a key starting
            with ``_`` other than ``_target_`` appears.
    """
    allowed = allowed_targets()
    if not isinstance(spec, Mapping):
        raise ValueError(f"{source}: {where}: a spec must be a mapping with _target_, got {type(spec).__name__}")
    _check_node(spec, str(source), where, allowed, top=True)


def _check_node(value: Any, source: str, where: str, allowed: Mapping[str, type], top: bool = False) -> None:
    if isinstance(value, Mapping):
        if top or "_target_" in value:
            target = value.get("_target_")
            if not isinstance(target, str) or target not in allowed:
                raise ValueError(
                    f"{source}: {where}._target_: {target!r} is not one of the library's model classes "
                    f"(allowed: {', '.join(sorted(n for n in allowed if n.count('.') == 2))})"
                )
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{source}: {where}: keys must be strings, got {key!r}")
            if key.startswith("_") and key != "_target_":
                raise ValueError(f"{source}: {where}.{key}: only _target_ may start with '_' in a spec")
            _check_node(item, source, f"{where}.{key}", allowed)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_node(item, source, f"{where}[{i}]", allowed)


def build_from_spec(spec: Mapping[str, Any], source: str | Path = "spec", where: str = "spec") -> nn.Module:
    """Construct a model from a ``{"_target_": "hypercut....", **kwargs}`` spec, recursively.

    The whole spec is checked by :func:`check_spec` first, so a bad nested target builds nothing.

    Args:
        spec: the constructor call as data. Nested mappings that carry ``_target_`` (as keyword
            arguments or list items) are built first.
        source: the file the spec comes from, named in error messages.
        where: the key path of ``spec`` inside that file, named in error messages.

    Returns:
        The constructed ``nn.Module``.

    Raises:
        ValueError: a target is not in :data:`MODEL_CLASSES`, or the arguments do not fit its class.

    Example:
        >>> net = build_from_spec({"_target_": "hypercut.models.MultiFrameUNet", "num_frames": 5})
    """
    check_spec(spec, source, where)
    built = _build(spec, str(source), where, allowed_targets())
    if not isinstance(built, nn.Module):
        raise ValueError(f"{source}: {where}: the spec did not build a model")
    return built


def _build(value: Any, source: str, where: str, allowed: Mapping[str, type[nn.Module]]) -> Any:
    if isinstance(value, Mapping) and "_target_" in value:
        cls = allowed[value["_target_"]]
        kwargs = {k: _build(v, source, f"{where}.{k}", allowed) for k, v in value.items() if k != "_target_"}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {where}: cannot build {value['_target_']}: {err}") from err
    if isinstance(value, Mapping):
        return {k: _build(v, source, f"{where}.{k}", allowed) for k, v in value.items()}
    if isinstance(value, list):
        return [_build(v, source, f"{where}[{i}]", allowed) for i, v in enumerate(value)]
    return value


def spec_of(module: nn.Module, **kwargs: Any) -> dict[str, Any]:
    """The spec of ``module``'s class with the given constructor arguments.

    Use it when a model was built in Python rather than from a config; arguments left out take the
    constructor's defaults, so pass every argument that differs from them.

    Raises:
        ValueError: the class is not in :data:`MODEL_CLASSES`.
    """
    names = [name for name, cls in allowed_targets().items() if cls is type(module)]
    if not names:
        raise ValueError(f"{type(module).__qualname__} is not in hypercut.export.MODEL_CLASSES")
    # The shortest name is the sub-package path users import from (hypercut.models.X).
    return {"_target_": min(names, key=len), **kwargs}


def non_finite_tensors(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Keys of the floating-point tensors of ``state_dict`` holding a NaN or an infinity."""
    return [
        key
        for key, value in state_dict.items()
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


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

    Raises:
        ValueError: the spec does not rebuild ``module``'s class, or a weight is NaN or infinite
            (a diverged run; nothing is written).
    """
    _check_plain(spec, "spec")
    rebuilt = build_from_spec(spec)
    if type(rebuilt) is not type(module):
        raise ValueError(f"spec builds {type(rebuilt).__name__}, not {type(module).__name__}")
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    bad = non_finite_tensors(state)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(f"{path}: refusing to write non-finite weights ({len(bad)} of {len(state)} tensors: {shown})")
    payload = {
        "format": FORMAT,
        "spec": dict(spec),
        "state_dict": state,
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "hypercut_version": hypercut.__version__,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def resolve_weights(path: str | Path) -> Path:
    """``path`` itself, or the shipped file of the :mod:`hypercut.zoo` entry of that name
    (``"default"``, ``"ordering-default"``) when no such local file exists."""
    from hypercut import zoo

    if not Path(path).exists() and str(path) in zoo.names():
        return zoo.zoo_path(str(path))
    return Path(path)


def read_weights(path: str | Path) -> dict[str, Any]:
    """Open a weights file safely (``weights_only=True``) and check its format and spec.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a weights file, a field is missing, or the spec names a class outside
            :data:`MODEL_CLASSES` (the message names the file and the key).
    """
    path = resolve_weights(path)
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
    check_spec(payload["spec"], path, "spec")
    return payload


def load_pretrained(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from a weights file written by :func:`save_weights` (no Hydra needed).

    Args:
        path: the weights file, or the name of a shipped model (see :mod:`hypercut.zoo`).
        map_location: device for the returned model.

    Returns:
        The model in eval mode, with ``model.hypercut_metrics`` holding the stored metrics.

    Example:
        >>> net = load_pretrained("runs/demo/deblur.pt")            # doctest: +SKIP
        >>> video = net(blurry)                                     # (B, T, 3, H, W)  # doctest: +SKIP
    """
    payload = read_weights(path)
    model: Any = build_from_spec(payload["spec"], path, "spec")  # Any: it gains a plain attribute below
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

"""Pretrained weights that ship inside the package (nothing is downloaded).

Each entry is a self-describing weights file (see :mod:`hypercut.export`) under ``hypercut/zoo/``;
its card (data, command, steps, metrics) is in ``docs/MODELS.md``.

Example:
    >>> from hypercut.zoo import list_models
    >>> [m.name for m in list_models()]  # doctest: +SKIP
    ['default', 'ordering-default', 'ordering-camera']
    >>> from hypercut.export import load_pretrained
    >>> net = load_pretrained("default")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ZOO_DIR", "ZooEntry", "list_models", "names", "zoo_path"]

ZOO_DIR = Path(__file__).parent / "weights"
"""Folder of the shipped weights files."""

_FILES = {
    "default": "default.pt",
    "ordering-default": "ordering-default.pt",
    "ordering-camera": "ordering-camera.pt",
}


@dataclass(frozen=True)
class ZooEntry:
    """One shipped model.

    Attributes:
        name: what :func:`hypercut.export.load_pretrained` takes.
        path: the weights file.
        target: the model class (the spec's ``_target_``).
        metrics: the metrics stored with the weights (held-out split of its training data).
    """

    name: str
    path: Path
    target: str
    metrics: dict[str, Any]


def names() -> list[str]:
    """The names of the zoo's entries."""
    return sorted(_FILES)


def zoo_path(name: str) -> Path:
    """The weights file of zoo entry ``name``.

    Raises:
        KeyError: ``name`` is not a zoo entry (the message lists the entries).
        FileNotFoundError: the entry's file is missing from this installation.
    """
    if name not in _FILES:
        raise KeyError(f"{name!r} is not a pretrained model; available: {sorted(_FILES)}")
    path = ZOO_DIR / _FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"pretrained model {name!r}: {path} is missing from this installation")
    return path


def list_models() -> list[ZooEntry]:
    """Every shipped model with its class and stored metrics (read with ``weights_only=True``)."""
    from hypercut.export import read_weights

    entries = []
    for name, file in _FILES.items():
        path = ZOO_DIR / file
        if path.is_file():
            payload = read_weights(path)
            entries.append(ZooEntry(name, path, str(payload["spec"].get("_target_")), dict(payload.get("metrics", {}))))
    return entries

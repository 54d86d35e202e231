"""Read an offline W&B run (``offline-run-*/run-<id>.wandb``) without the network or ``wandb sync``.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic, version), then protobuf
``Record`` messages in the LevelDB log format (32 KiB blocks; each chunk has a 7-byte header: CRC,
little-endian length, type FULL=1/FIRST=2/MIDDLE=3/LAST=4).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

_BLOCK = 32768
_HEADER = 7


@dataclass
class OfflineRun:
    """What an offline run recorded: its init arguments, config and history rows."""

    run_id: str = ""
    name: str = ""
    group: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def _records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    records, chunks, pos = [], [], _HEADER
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:  # the block's tail is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        chunks.append(data[pos : pos + length])
        pos += length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            records.append(record)
            chunks = []
    return records


def _items(items: Any) -> dict[str, Any]:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def read_offline_run(folder: Path) -> OfflineRun:
    """Parse ``folder/run-*.wandb`` (``folder`` is an ``offline-run-<time>-<id>`` folder)."""
    (log,) = folder.glob("run-*.wandb")
    run = OfflineRun()
    for record in _records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":  # the first one, or an update that may leave fields empty
            run.run_id = record.run.run_id or run.run_id
            run.name = record.run.display_name or run.name
            run.group = record.run.run_group or run.group
            run.config.update(_items(record.run.config.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "history":
            run.history.append(_items(record.history.item))
    return run

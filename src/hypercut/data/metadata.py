"""The on-disk dataset format: a root folder plus a ``metadata.json``.

The schema is the one the HyperCUT authors use for RB2V, REDS and B-AIST++::

    {"name": "rb2v-street", "frame_per_seq": 7,
     "data": [{"id": "00000/0000", "order": "ignore", "partition": "train",
               "blur_path": "00000/blur/0000.png",
               "frame001_path": "00000/sharp/0000_1.png", ..., "frame007_path": "..."}]}

Paths are relative to the root and may not leave it, not even through a symlink. ``order`` tells a dataset how to present a
sequence: ``ignore``/``keep`` as stored, ``reverse`` flipped, ``random`` flipped with probability
1/2 on every read. A missing ``order`` means ``ignore``; every other field is required. Keys this
module does not know are kept, so a read/write round trip loses nothing.

Validation reports every problem in one pass, each naming the metadata file, the sample index, the
field and the path, e.g. ``metadata.json: data[12].frame003_path: file not found: 00012/sharp/3.png``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

__all__ = [
    "CHECKS",
    "ORDERS",
    "PARTITIONS",
    "DatasetMetadata",
    "DatasetValidationError",
    "SampleRecord",
    "check_dataset",
    "frame_key",
    "metadata_digest",
    "parse_metadata",
    "read_metadata",
    "resolve_metadata_path",
    "validate_dataset",
    "write_metadata",
]

ORDERS = ("ignore", "keep", "reverse", "random")
"""Allowed values of a sample's ``order``; ``keep`` is a synonym of ``ignore``."""

PARTITIONS = ("train", "val", "test")
"""Allowed values of a sample's ``partition``."""

_FRAME_KEY = re.compile(r"^frame(\d+)_path$")
_KNOWN_KEYS = {"id", "order", "partition", "blur_path"}
_MAX_MESSAGE_LINES = 40


def frame_key(index: int) -> str:
    """Metadata key of the 1-based frame ``index``: ``frame_key(3) == "frame003_path"``."""
    return f"frame{index:03d}_path"


class DatasetValidationError(ValueError):
    """A dataset or its metadata has problems; ``problems`` lists every one of them.

    Attributes:
        problems: one line per problem, each naming file, sample index, field and path.
    """

    def __init__(self, problems: Sequence[str], context: str = "dataset") -> None:
        self.problems = list(problems)
        shown = self.problems[:_MAX_MESSAGE_LINES]
        more = len(self.problems) - len(shown)
        lines = [f"{len(self.problems)} problem(s) in {context}:", *(f"  {p}" for p in shown)]
        if more:
            lines.append(f"  ... and {more} more (see the exception's .problems)")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class SampleRecord:
    """One entry of ``data``: a blurry image and its sharp frames.

    Attributes:
        id: sample identifier, unique in the file.
        blur_path: blurry image, relative to the dataset root (POSIX separators).
        frame_paths: sharp frames in stored temporal order, relative to the root.
        partition: ``train``, ``val`` or ``test``.
        order: ``ignore``, ``keep``, ``reverse`` or ``random``.
        extra: keys of the entry this library does not use, kept for round trips.
    """

    id: str
    blur_path: str
    frame_paths: tuple[str, ...]
    partition: str = "train"
    order: str = "ignore"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def num_frames(self) -> int:
        """Number of sharp frames."""
        return len(self.frame_paths)

    def to_dict(self) -> dict[str, Any]:
        """The JSON entry, in the authors' key order."""
        out: dict[str, Any] = {
            "id": self.id,
            "order": self.order,
            "partition": self.partition,
            "blur_path": self.blur_path,
        }
        for i, p in enumerate(self.frame_paths, start=1):
            out[frame_key(i)] = p
        out.update(self.extra)
        return out


@dataclass
class DatasetMetadata:
    """A parsed ``metadata.json``.

    Attributes:
        name: dataset name.
        frame_per_seq: number of sharp frames per sample (``T``, at least 3).
        samples: the entries of ``data`` in file order.
        extra: top-level keys this library does not use, kept for round trips.
        source: file name used in error messages (set when read from a file).
    """

    name: str
    frame_per_seq: int
    samples: list[SampleRecord]
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    source: str = field(default="metadata", compare=False, repr=False)

    def indexed(self, partitions: str | Iterable[str] | None = None) -> list[tuple[int, SampleRecord]]:
        """``(index in data, sample)`` pairs of the given partitions (all when ``None``)."""
        if partitions is None:
            return list(enumerate(self.samples))
        wanted = {partitions} if isinstance(partitions, str) else set(partitions)
        return [(i, s) for i, s in enumerate(self.samples) if s.partition in wanted]

    def partition(self, name: str) -> list[SampleRecord]:
        """Samples whose ``partition`` is ``name``, in file order."""
        return [s for s in self.samples if s.partition == name]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        out: dict[str, Any] = {"name": self.name, "frame_per_seq": self.frame_per_seq}
        out.update(self.extra)
        out["data"] = [s.to_dict() for s in self.samples]
        return out


def _path_problem(value: str) -> str | None:
    """Why a relative path is not allowed, or None."""
    if value == "":
        return "empty path"
    if (
        PurePosixPath(value).is_absolute()
        or PureWindowsPath(value).is_absolute()
        or PureWindowsPath(value).drive
    ):
        return f"absolute path not allowed: {value}"
    normal = os.path.normpath(value.replace("\\", "/"))
    if normal == ".." or normal.startswith("../") or normal.startswith("..\\"):
        return f"path escapes the dataset root: {value}"
    return None


_EntryPaths = tuple[int, Any, list[tuple[str, str]]]
"""``(index in data, partition value, [(key, path), ...])`` of one entry of ``data``."""


def _parse(obj: Any, source: str) -> tuple[DatasetMetadata, list[str], list[_EntryPaths]]:
    """Parse a decoded ``metadata.json`` leniently, collecting every problem.

    Entries with structural problems are left out of the returned metadata; path and file checks are
    the job of :func:`validate_dataset`.

    Args:
        obj: the decoded JSON document.
        source: file name used in problem messages.

    Returns:
        The metadata (possibly partial), the list of problems (empty when valid) and the string path
        fields of every entry of ``data``, those with structural problems included.
    """
    problems: list[str] = []
    if not isinstance(obj, dict):
        return (
            DatasetMetadata("", 0, []),
            [f"{source}: top level must be an object, got {type(obj).__name__}"],
            [],
        )

    name = obj.get("name", "")
    if not isinstance(name, str):
        problems.append(f"{source}: name: must be a string, got {name!r}")
        name = str(name)
    if "name" not in obj:
        problems.append(f"{source}: name: missing field")

    fps = obj.get("frame_per_seq")
    if "frame_per_seq" not in obj:
        problems.append(f"{source}: frame_per_seq: missing field")
        fps = None
    elif isinstance(fps, bool) or not isinstance(fps, int) or fps < 3:
        problems.append(f"{source}: frame_per_seq: must be an integer >= 3, got {fps!r}")
        fps = None

    data = obj.get("data")
    if "data" not in obj:
        problems.append(f"{source}: data: missing field")
        data = []
    elif not isinstance(data, list):
        problems.append(f"{source}: data: must be a list, got {type(data).__name__}")
        data = []

    samples: list[SampleRecord] = []
    entries: list[_EntryPaths] = []
    first_seen: dict[str, int] = {}
    for i, entry in enumerate(data):
        where = f"{source}: data[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be an object, got {type(entry).__name__}")
            continue
        bad = False
        values: dict[str, str] = {}
        paths = [("blur_path", entry["blur_path"])] if isinstance(entry.get("blur_path"), str) else []
        entries.append((i, entry.get("partition"), paths))
        for key in ("id", "partition", "blur_path"):
            if key not in entry:
                problems.append(f"{where}.{key}: missing field")
                bad = True
            elif not isinstance(entry[key], str):
                problems.append(f"{where}.{key}: must be a string, got {entry[key]!r}")
                bad = True
            else:
                values[key] = entry[key]
        order = entry.get("order", "ignore")
        if order not in ORDERS:
            problems.append(f"{where}.order: unknown order {order!r} (expected one of {', '.join(ORDERS)})")
            bad = True
        if "partition" in values and values["partition"] not in PARTITIONS:
            problems.append(
                f"{where}.partition: unknown partition {values['partition']!r} "
                f"(expected one of {', '.join(PARTITIONS)})"
            )
            bad = True
        if "id" in values:
            sid = values["id"]
            if sid in first_seen:
                problems.append(f"{where}.id: duplicate id {sid!r} (first used by data[{first_seen[sid]}])")
                bad = True
            else:
                first_seen[sid] = i

        frames: dict[int, str] = {}
        extra: dict[str, Any] = {}
        for key, value in entry.items():
            m = _FRAME_KEY.match(key)
            if m is None:
                if key not in _KNOWN_KEYS:
                    extra[key] = value
                continue
            if len(m.group(1)) < 3 or key != frame_key(int(m.group(1))):
                problems.append(
                    f"{where}.{key}: frame keys are zero-padded to 3 digits ({frame_key(int(m.group(1)))})"
                )
                bad = True
                continue
            if not isinstance(value, str):
                problems.append(f"{where}.{key}: must be a string, got {value!r}")
                bad = True
                continue
            frames[int(m.group(1))] = value
            paths.append((key, value))
        expected = fps if fps is not None else (max(frames) if frames else 0)
        if not frames:
            problems.append(
                f"{where}: no frame paths (expected frame001_path..{frame_key(max(expected, 1))})"
            )
            bad = True
        else:
            for k in range(1, expected + 1):
                if k not in frames:
                    problems.append(f"{where}.{frame_key(k)}: missing field (frame_per_seq is {expected})")
                    bad = True
            for k in sorted(frames):
                if k < 1 or k > expected:
                    problems.append(
                        f"{where}.{frame_key(k)}: frame {k} outside frame_per_seq = {expected} "
                        f"(the sample has {len(frames)} frames)"
                    )
                    bad = True
        if bad:
            continue
        samples.append(
            SampleRecord(
                id=values["id"],
                blur_path=values["blur_path"],
                frame_paths=tuple(frames[k] for k in range(1, expected + 1)),
                partition=values["partition"],
                order=order,
                extra=extra,
            )
        )
    top_extra = {k: v for k, v in obj.items() if k not in ("name", "frame_per_seq", "data")}
    meta = DatasetMetadata(name=name, frame_per_seq=fps or 0, samples=samples, extra=top_extra, source=source)
    return meta, problems, entries


def parse_metadata(obj: Any, source: str = "metadata.json") -> tuple[DatasetMetadata, list[str]]:
    """Parse a decoded ``metadata.json`` leniently, collecting every problem.

    Entries with structural problems are left out of the returned metadata; path and file checks are
    the job of :func:`validate_dataset`.

    Args:
        obj: the decoded JSON document.
        source: file name used in problem messages.

    Returns:
        The metadata (possibly partial) and the list of problems (empty when valid).
    """
    meta, problems, _ = _parse(obj, source)
    return meta, problems


def resolve_metadata_path(root: str | Path, metadata: str | Path = "metadata.json") -> Path:
    """The metadata file: ``metadata`` itself if absolute, else relative to ``root``."""
    metadata = Path(metadata)
    return metadata if metadata.is_absolute() else Path(root) / metadata


def _load_json(path: Path, source: str) -> tuple[Any, list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [f"{source}: file not found: {path}"]
    except OSError as exc:
        return None, [f"{source}: cannot read: {exc}"]
    try:
        return json.loads(text), []
    except json.JSONDecodeError as exc:
        return None, [f"{source}: invalid JSON: {exc}"]


def read_metadata(path: str | Path) -> DatasetMetadata:
    """Read and parse a metadata file.

    Args:
        path: the ``metadata.json`` file.

    Raises:
        DatasetValidationError: the file is missing, is not JSON, or breaks the schema (all
            problems listed). File existence is not checked here; see :func:`validate_dataset`.
    """
    path = Path(path)
    obj, problems = _load_json(path, path.name)
    if problems:
        raise DatasetValidationError(problems, context=str(path))
    meta, problems = parse_metadata(obj, path.name)
    if problems:
        raise DatasetValidationError(problems, context=str(path))
    return meta


def write_metadata(meta: DatasetMetadata, path: str | Path) -> Path:
    """Write metadata as indented JSON (atomically: a temporary file is renamed over ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def metadata_digest(path: str | Path) -> str:
    """SHA-256 of a metadata file's bytes (used to notice a stale packed store)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


CHECKS = ("files", "headers", "full")
"""Levels of :func:`validate_dataset`: files exist inside the root; and their headers read, files are
complete and a sample's images have one size; and every image decodes."""


def _file_problems(
    root: Path, source: str, entries: list[_EntryPaths], wanted: set[str] | None, check: str
) -> list[str]:
    """Path, file and image problems of the entries of the wanted partitions, in file order."""
    from hypercut.data.io import ImageReadError, read_header, read_image_raw

    real_root = root.resolve()
    problems: list[str] = []
    for i, partition, paths in entries:
        if wanted is not None and partition not in wanted:
            continue
        reference: tuple[str, int, int] | None = None
        for key, p in paths:
            where = f"{source}: data[{i}].{key}"
            why = _path_problem(p)
            if why is not None:
                problems.append(f"{where}: {why}")
                continue
            file = root / p
            if not file.is_file():
                problems.append(f"{where}: file not found: {p}")
                continue
            if not file.resolve().is_relative_to(real_root):
                problems.append(f"{where}: leaves the dataset root through a symlink: {p} -> {file.resolve()}")
                continue
            if check == "files":
                continue
            try:
                header = read_header(file)
                if check == "full":
                    read_image_raw(file)
            except ImageReadError as exc:
                problems.append(f"{where}: {exc}")
                continue
            if reference is None:
                reference = (p, header.height, header.width)
            elif (header.height, header.width) != reference[1:]:
                problems.append(
                    f"{where}: size {header.height}x{header.width} of {p} differs from "
                    f"{reference[0]} ({reference[1]}x{reference[2]})"
                )
    return problems


def _validate(
    root: Path,
    metadata: str | Path | DatasetMetadata,
    partitions: str | Iterable[str] | None,
    check: str,
) -> tuple[DatasetMetadata | None, list[str]]:
    if check not in CHECKS:
        raise ValueError(f"check must be one of {', '.join(CHECKS)}, got {check!r}")
    problems: list[str]
    if isinstance(metadata, DatasetMetadata):
        meta, problems, source = metadata, [], metadata.source
        entries: list[_EntryPaths] = [
            (i, s.partition, [("blur_path", s.blur_path), *((frame_key(k), p) for k, p in enumerate(s.frame_paths, 1))])
            for i, s in enumerate(meta.samples)
        ]
    else:
        source = str(metadata)
        obj, problems = _load_json(resolve_metadata_path(root, metadata), source)
        if problems:
            return None, problems
        meta, problems, entries = _parse(obj, source)
    if not root.is_dir():
        return meta, [*problems, f"{source}: dataset root is not a folder: {root}"]
    wanted = None if partitions is None else ({partitions} if isinstance(partitions, str) else set(partitions))
    return meta, [*problems, *_file_problems(root, source, entries, wanted, check)]


def validate_dataset(
    root: str | Path,
    metadata: str | Path | DatasetMetadata = "metadata.json",
    partitions: str | Iterable[str] | None = None,
    check: str = "headers",
) -> list[str]:
    """Every problem of every sample of a dataset, in one pass.

    Checks that the metadata is valid JSON following the schema, that every path stays inside the
    root (symlinks resolved) and that every file exists; an entry that breaks the schema still has
    its paths checked. With ``check="headers"`` (the default) every image's header is read: empty,
    non-image and truncated PNG/JPEG files are reported, and a sample's frames must have its blurry
    image's size. ``check="full"`` also decodes every image (finds corrupt pixel data).

    Args:
        root: dataset root folder.
        metadata: metadata file name relative to ``root`` (or absolute), or parsed metadata.
        partitions: only check samples of these partitions (schema problems are always reported).
        check: ``"files"``, ``"headers"`` or ``"full"`` (see :data:`CHECKS`).

    Returns:
        Problems, one line each, e.g.
        ``metadata.json: data[12].frame003_path: file not found: 00012/sharp/3.png``; empty if valid.
    """
    return _validate(Path(root), metadata, partitions, check)[1]


def check_dataset(
    root: str | Path,
    metadata: str | Path | DatasetMetadata = "metadata.json",
    partitions: str | Iterable[str] | None = None,
    check: str = "files",
) -> DatasetMetadata:
    """Validate a dataset and return its parsed metadata.

    Same checks and arguments as :func:`validate_dataset`, but ``check="files"`` by default: fast
    enough for every training start (a bad image is reported by name when it is read).

    Raises:
        DatasetValidationError: listing every problem found.
    """
    meta, problems = _validate(Path(root), metadata, partitions, check)
    if problems or meta is None:
        raise DatasetValidationError(problems, context=f"dataset {root}")
    return meta

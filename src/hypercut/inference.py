"""Run a deblurring model on users' images: any resolution, CPU or GPU, frames + GIF + MP4 out.

Two layers:

* :func:`deblur_image` turns one blurry image into its ``T`` sharp frames, whole or in overlapping
  tiles blended with linear ramps (so seams do not show), optionally under bf16 autocast.
* :func:`infer` runs a weights file (or a module) over files and folders and writes, per input,
  ``out_dir/<stem>/frame_001.png ...``, ``out_dir/<stem>.gif`` and ``out_dir/<stem>.mp4``. An
  unreadable input is recorded in the returned :class:`InferenceReport` and the run goes on.

:func:`main` is the ``hypercut-infer`` command line over :func:`infer`.

Example:
    >>> from hypercut.inference import infer
    >>> report = infer("runs/demo/deblur.pt", ["photos/"], "out/")     # doctest: +SKIP
    >>> print(report.summary())                                         # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from hypercut import media
from hypercut.data.io import IMAGE_SUFFIXES, list_images, read_image
from hypercut.export import load_pretrained

__all__ = ["InferenceReport", "choose_tile", "deblur_image", "expand_inputs", "infer"]

#: Default pixel budget for one forward pass: larger images are tiled (about 1 megapixel).
DEFAULT_MAX_PIXELS = 1024 * 1024
_FORMATS = ("png", "gif", "mp4")


def choose_tile(height: int, width: int, max_pixels: int, overlap: int = 32, multiple: int = 16) -> int | None:
    """Pick a square tile size so that one forward pass sees at most ``max_pixels`` pixels.

    Args:
        height: image height.
        width: image width.
        max_pixels: pixel budget for one tile (it sets the memory a forward pass needs).
        overlap: overlap between neighbouring tiles; the tile must be larger than twice this.
        multiple: the tile side is rounded down to a multiple of this (pass the ``align`` of
            :func:`deblur_image`).

    Returns:
        ``None`` when the whole image fits in the budget, else the tile side.

    Raises:
        ValueError: if the budget is too small for a tile larger than ``2 * overlap``.

    Example:
        >>> choose_tile(720, 1280, max_pixels=1024 * 1024) is None
        True
        >>> choose_tile(2160, 3840, max_pixels=1024 * 1024)
        1024
    """
    if height * width <= max_pixels:
        return None
    side = math.isqrt(max_pixels) // multiple * multiple
    if side <= 2 * overlap or side - overlap < multiple:
        raise ValueError(f"max_pixels={max_pixels} gives {side}-pixel tiles, too small for overlap={overlap}")
    return side


def _axis_tiles(length: int, tile: int, overlap: int, align: int) -> list[tuple[int, int, Tensor]]:
    """``(start, size, weight)`` of the tiles along one axis.

    Tiles start at multiples of the stride, the largest multiple of ``align`` that leaves at least
    ``overlap`` pixels of overlap. The last tile starts at the last multiple of ``align`` that lets
    it reach the image border, so it is up to ``align - 1`` pixels longer than ``tile``: every origin
    stays on the ``align`` grid and no tile sees padding the whole-image pass would not.
    """
    if length <= tile:
        return [(0, length, torch.ones(length))]
    stride = (tile - overlap) // align * align
    if stride < 1:
        raise ValueError(f"tile={tile} - overlap={overlap} must be at least align={align}")
    last = (length - tile) // align * align
    spans = [(start, tile) for start in range(0, last, stride)] + [(last, length - last)]
    ramp = tile - stride
    return [(start, size, _ramp(size, ramp, left=start > 0, right=start + size < length))
            for start, size in spans]


def _ramp(size: int, overlap: int, left: bool, right: bool) -> Tensor:
    """1-D blending weight of a tile, on the sides where it overlaps a neighbour.

    The ``overlap // 4`` pixels nearest an inner tile edge get weight 0 (a convolutional net sees its
    zero padding there); across the rest of the overlap the weight rises linearly, so two tiles
    overlapping by exactly ``overlap`` cross-fade with weights summing to 1. Image borders keep
    weight 1. Every pixel keeps a positive total weight, since two margins (a quarter of the overlap
    each) can never cover the same pixel.
    """
    weight = torch.ones(size)
    margin = overlap // 4
    rise = ((torch.arange(size, dtype=torch.float32) + 1 - margin) / (overlap - 2 * margin + 1)).clamp_(0, 1)
    if left:
        weight = torch.minimum(weight, rise)
    if right:
        weight = torch.minimum(weight, rise.flip(0))
    return weight


def _net_alignment(net: nn.Module) -> int:
    """The multiple a hypercut backbone pads its input to (its downsampling grid), else 16."""
    multiple = getattr(net, "pad_multiple", None)
    return multiple if isinstance(multiple, int) and multiple >= 1 else 16


def _forward(net: nn.Module, batch: Tensor, bf16: bool) -> Tensor:
    """``net(batch)`` as float32, checking the ``(B, T, 3, H, W)`` contract."""
    with torch.autocast(device_type=batch.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = net(batch)
    if not isinstance(out, Tensor) or out.ndim != 5 or out.shape[0] != batch.shape[0] \
            or out.shape[2] != 3 or out.shape[-2:] != batch.shape[-2:]:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{type(net).__name__} must map (B, 3, H, W) {tuple(batch.shape)} to "
                         f"(B, T, 3, H, W), got {got}")
    return out.float()


def deblur_image(
    net: nn.Module,
    blurry: Tensor | np.ndarray,
    *,
    tile: int | None = None,
    overlap: int = 32,
    device: str | torch.device = "cpu",
    bf16: bool = False,
    max_pixels: int | None = None,
    align: int | None = None,
    batch_size: int = 1,
) -> Tensor:
    """Predict the sharp frames behind one blurry image, whole or tile by tile.

    With a tile size, the image is cut into ``tile x tile`` crops overlapping by at least
    ``overlap`` pixels, whose origins are multiples of ``align`` (the last row and column of crops
    are up to ``align - 1`` pixels larger so that they end at the image border). The crops go
    through ``net`` ``batch_size`` at a time and are blended back: the quarter of each overlap next
    to an inner crop edge is dropped and the rest cross-fades linearly, so no seam shows and memory
    stays bounded whatever the resolution. A net whose receptive field reaches no further than that
    quarter gives the untiled result exactly; one with a larger field (a U-Net) differs slightly,
    most near the seams.

    ``align`` matters for nets that downsample: a stride-2 layer is not shift-invariant, so a crop
    that starts off its grid is predicted differently (on a small random U-Net, unaligned tiles
    differ from the whole-image pass about 100 times more than aligned ones). By default it is the
    net's ``pad_multiple`` attribute, the multiple the hypercut backbones pad their input to
    (``MultiFrameUNet``: ``2 ** (depth + 1)``, 16 by default), else 16.

    ``net`` is moved to ``device`` and run in eval mode (its previous train/eval mode is restored).

    Args:
        net: a backbone mapping ``(B, 3, H, W)`` to ``(B, T, 3, H, W)``.
        blurry: the image, float in ``[0, 1]``, as a tensor or array.
        tile: tile side in pixels; ``None`` runs the whole image unless ``max_pixels`` asks for tiles.
        overlap: minimum overlap between neighbouring tiles (must be smaller than half the tile).
            The actual overlap is ``tile`` minus the stride, the stride being rounded down to a
            multiple of ``align``.
        device: where ``net`` runs. The result is always returned on the CPU.
        bf16: run under bfloat16 autocast (CUDA or CPU); the result is float32 either way.
        max_pixels: when ``tile`` is ``None`` and the image has more pixels than this, a tile size is
            chosen with :func:`choose_tile`.
        align: tile origins are multiples of this (see above); ``tile - overlap`` must reach it.
            ``None``: ``net.pad_multiple`` if the net has it, else 16.
        batch_size: tiles per forward pass.

    Returns:
        The predicted frames on the CPU, float32, clamped to ``[0, 1]``.

    Shape:
        - blurry: :math:`(3, H, W)`
        - Output: :math:`(T, 3, H, W)`

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 15, 1), torch.nn.Unflatten(1, (5, 3)))
        >>> deblur_image(net, torch.rand(3, 67, 93), tile=48, overlap=8, align=16).shape
        torch.Size([5, 3, 67, 93])
    """
    image = torch.as_tensor(blurry, dtype=torch.float32)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"blurry must be (3, H, W), got {tuple(image.shape)}")
    if align is None:
        align = _net_alignment(net)
    if align < 1:
        raise ValueError(f"align must be >= 1, got {align}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    height, width = image.shape[-2:]
    if tile is None and max_pixels is not None:
        tile = choose_tile(height, width, max_pixels, overlap, multiple=max(align, 1))
    if tile is not None and tile <= 2 * overlap:
        raise ValueError(f"tile={tile} must be larger than twice overlap={overlap}")
    if tile is not None and tile - overlap < align:
        raise ValueError(f"tile={tile} - overlap={overlap} must be at least align={align}")

    device = torch.device(device)
    was_training = net.training
    net.to(device).eval()
    try:
        with torch.inference_mode():
            if tile is None or (tile >= height and tile >= width):
                out = _forward(net, image[None].to(device), bf16)[0].cpu()
            else:
                out = _deblur_tiled(net, image, tile, overlap, align, device, bf16, batch_size)
            out = out.clamp_(0.0, 1.0)
    finally:
        net.train(was_training)
    return out.clone()  # a normal tensor: inference tensors refuse in-place updates outside inference mode


def _deblur_tiled(
    net: nn.Module,
    image: Tensor,
    tile: int,
    overlap: int,
    align: int,
    device: torch.device,
    bf16: bool,
    batch_size: int,
) -> Tensor:
    """Tile, predict and blend; accumulates on the CPU so device memory holds one batch of tiles."""
    height, width = image.shape[-2:]
    boxes = [(y, h, wy, x, w, wx)
             for y, h, wy in _axis_tiles(height, tile, overlap, align)
             for x, w, wx in _axis_tiles(width, tile, overlap, align)]
    # Tiles of one size are batched together; the last row and column may be a little larger.
    by_size: dict[tuple[int, int], list[tuple[int, int, Tensor, int, int, Tensor]]] = {}
    for box in boxes:
        by_size.setdefault((box[1], box[4]), []).append(box)

    out: Tensor | None = None
    weight_sum = torch.zeros(height, width)
    for group in by_size.values():
        for first in range(0, len(group), batch_size):
            chunk = group[first : first + batch_size]
            crops = torch.stack([image[:, y : y + h, x : x + w] for y, h, _, x, w, _ in chunk]).to(device)
            pred = _forward(net, crops, bf16).cpu()
            if out is None:
                out = torch.zeros(pred.shape[1], 3, height, width)
            for (y, h, wy, x, w, wx), frames in zip(chunk, pred):
                weight = torch.outer(wy, wx)
                out[..., y : y + h, x : x + w] += frames * weight
                weight_sum[y : y + h, x : x + w] += weight
    assert out is not None  # at least one tile always exists
    return out.div_(weight_sum)


@dataclass
class InferenceReport:
    """What :func:`infer` did.

    Attributes:
        written: every file written (frames, GIFs, MP4s), in order.
        failed: ``(input path, reason)`` for each input that could not be processed.
        processed: the inputs that were processed successfully.
        seconds: wall-clock time of the whole run.
    """

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    processed: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no input failed."""
        return not self.failed

    def summary(self) -> str:
        """A few human-readable lines: counts, time, and each failure with its reason."""
        lines = [f"{len(self.processed)} input(s) processed, {len(self.written)} file(s) written, "
                 f"{len(self.failed)} failed, in {self.seconds:.1f} s"]
        lines += [f"  FAILED {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)


def expand_inputs(inputs: Iterable[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders into the list of image files to process.

    A folder stands for its image files (:data:`hypercut.data.io.IMAGE_SUFFIXES`, any case, not
    recursive, in natural order); a file is taken as given, whatever its suffix. Duplicates are dropped.

    Args:
        inputs: files and folders.

    Returns:
        ``(files, problems)``: the files in order, and ``(path, reason)`` for inputs that do not exist
        or folders without images.
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = list_images(path)
            if not found:
                problems.append((path, f"folder has no image files ({' '.join(IMAGE_SUFFIXES)})"))
        elif path.exists():
            found = [path]
        else:
            problems.append((path, "not found"))
            found = []
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files, problems


def _unique_stem(stem: str, used: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... if an earlier input already took it."""
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    return name


def _check_outputs(out_dir: Path, stems: Sequence[str], formats: Sequence[str], overwrite: bool) -> None:
    """Refuse to write over an earlier run's outputs unless ``overwrite``."""
    if overwrite:
        return
    targets = []
    for stem in stems:
        targets += [out_dir / stem] if "png" in formats else []
        targets += [out_dir / f"{stem}.{fmt}" for fmt in ("gif", "mp4") if fmt in formats]
    existing = [str(t) for t in targets if t.exists()]
    if existing:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise FileExistsError(
            f"{out_dir}: outputs of an earlier run exist ({shown}); pass overwrite=true to replace them "
            "or choose another output folder"
        )


def _is_out_of_memory(err: BaseException) -> bool:
    """CUDA OOM, or the CPU allocator giving up: worth reporting per input, not crashing the run."""
    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err)
    )


def _deblur_within_memory(
    net: nn.Module,
    blurry: np.ndarray,
    *,
    tile: int | None,
    overlap: int,
    device: str | torch.device,
    bf16: bool,
    max_pixels: int,
    align: int | None,
    retries: int = 3,
) -> Tensor:
    """:func:`deblur_image`, retried in tiles of a quarter of the pixels when memory runs out.

    Raises:
        MemoryError: when the smallest tiles tried still do not fit (or become too small to tile).
    """
    def attempt(tile_side: int | None) -> Tensor:
        return deblur_image(net, blurry, tile=tile_side, overlap=overlap, device=device, bf16=bf16,
                            max_pixels=max_pixels, align=align)

    height, width = blurry.shape[-2:]
    try:
        return attempt(tile)
    except RuntimeError as err:  # anything but running out of memory is a bug: let it raise
        if not _is_out_of_memory(err):
            raise
        error = err
    budget = tried = min(height * width, max_pixels if tile is None else tile * tile)
    multiple = align if align is not None else _net_alignment(net)
    for _ in range(retries):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        budget //= 4
        try:
            side = choose_tile(height, width, budget, overlap, multiple=multiple)
        except ValueError:
            break
        tried = (side or 0) ** 2
        try:
            return attempt(side)
        except RuntimeError as err:
            if not _is_out_of_memory(err):
                raise
            error = err
    raise MemoryError(f"out of memory, also in tiles of {tried} pixels ({error}); "
                      "try a smaller overlap or a larger device")


def infer(
    weights_or_model: str | Path | nn.Module,
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    bf16: bool = False,
    tile: int | None = None,
    overlap: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    align: int | None = None,
    fps: float = 8.0,
    formats: Sequence[str] = _FORMATS,
    pingpong: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> InferenceReport:
    """Deblur images into videos: per input, PNG frames, a GIF and an MP4 under ``out_dir``.

    For an input ``photos/cat.jpg`` it writes ``out_dir/cat/frame_001.png`` ... ``frame_00T.png``,
    ``out_dir/cat.gif`` and ``out_dir/cat.mp4`` (a later input with the same stem gets ``cat-2``).
    An input that cannot be read (missing, corrupt, not an image) or that runs out of memory is
    recorded in the report and the run continues; the failures are listed at the end. Outputs of an
    earlier run are never mixed in: when one of the paths to write exists, nothing is done unless
    ``overwrite``, which first deletes the ``frame_*.png`` of each input's folder.

    Args:
        weights_or_model: a weights file written by :func:`hypercut.export.save_weights`, or a module.
        inputs: image files and folders (a folder stands for its image files, sorted).
        out_dir: output folder (created).
        device: where the model runs (``"cpu"``, ``"cuda"``, ...).
        bf16: bfloat16 autocast.
        tile: tile side; ``None`` chooses one from ``max_pixels`` when an image is larger. When memory
            runs out, the image is retried in tiles of a quarter of the pixels, up to three times.
        overlap: minimum tile overlap in pixels.
        max_pixels: pixel budget of one forward pass when ``tile`` is ``None``.
        align: tile origins are multiples of this; ``None``: the net's ``pad_multiple`` (see
            :func:`deblur_image`).
        fps: frame rate of the GIF and MP4.
        formats: any of ``"png"``, ``"gif"``, ``"mp4"``.
        pingpong: make the GIF play forwards then backwards.
        progress: show a progress bar and print the summary at the end (on stderr).
        overwrite: replace the outputs of an earlier run in ``out_dir``.

    Returns:
        An :class:`InferenceReport` of the files written and the inputs that failed.

    Raises:
        FileExistsError: an output path exists and ``overwrite`` is false (checked before any work).
    """
    start = time.perf_counter()
    formats = tuple(formats)
    unknown = set(formats) - set(_FORMATS)
    if unknown:
        raise ValueError(f"formats: unknown {sorted(unknown)}, choose from {_FORMATS}")
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    files, problems = expand_inputs(inputs)
    out_dir = Path(out_dir)
    used: set[str] = set()
    stems = [_unique_stem(path.stem, used) for path in files]
    _check_outputs(out_dir, stems, formats, overwrite)
    if isinstance(weights_or_model, nn.Module):
        net = weights_or_model
    else:
        net = load_pretrained(weights_or_model, map_location=device)
    report = InferenceReport(failed=list(problems))
    out_dir.mkdir(parents=True, exist_ok=True)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    bar = Progress(TextColumn("[bold]deblur[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.description}"), console=console, disable=not progress)
    with bar:
        task = bar.add_task("", total=len(files))
        for path, stem in zip(files, stems):
            bar.update(task, description=path.name)
            try:
                blurry = read_image(path).transpose(2, 0, 1)
            except OSError as err:  # read_image's errors already name the file
                report.failed.append((path, str(err)))
                bar.advance(task)
                continue
            try:
                frames = _deblur_within_memory(net, blurry, tile=tile, overlap=overlap, device=device,
                                               bf16=bf16, max_pixels=max_pixels, align=align)
            except MemoryError as err:
                report.failed.append((path, str(err)))
                bar.advance(task)
                continue
            images = media.to_uint8(frames)
            if "png" in formats:
                for stale in (out_dir / stem).glob("frame_*.png"):
                    stale.unlink()
                report.written += media.save_frames(images, out_dir / stem)
            if "gif" in formats:
                report.written.append(media.save_gif(images, out_dir / f"{stem}.gif", fps, pingpong))
            if "mp4" in formats:
                report.written.append(media.save_mp4(images, out_dir / f"{stem}.mp4", fps))
            report.processed.append(path)
            bar.advance(task)
    report.seconds = time.perf_counter() - start
    if progress:
        console.print(report.summary(), highlight=False, markup=False)
    return report

"""Blur datasets from high-frame-rate video (GoPro/REDS-style).

A window of ``window = T * m`` consecutive frames is averaged (in linear light when ``gamma`` is set)
into one blurry image; the sharp frames are ``T`` evenly spaced frames of the window, frame
``floor((2j + 1) * window / (2T))`` for ``j = 0..T-1`` (the middle frame of each of ``T`` equal
segments when ``m`` is odd).

Partitions are assigned by contiguous chunks of the video: frames ``[0, n_train)`` feed train
windows only, the next chunk val, the last test, so no test frame is ever seen in training and no
window straddles two partitions. ``gap`` frames are dropped at the start of the val and test chunks
to keep near-identical neighbouring frames apart.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from hypercut.data._progress import progress
from hypercut.data.io import list_images, read_image, to_float, write_image
from hypercut.data.metadata import PARTITIONS, DatasetMetadata, SampleRecord, write_metadata
from hypercut.data.synth import decode_gamma, encode_gamma, split_counts

__all__ = [
    "count_video_frames",
    "dataset_from_video",
    "iter_video_frames",
    "plan_windows",
    "window_sharp_indices",
]


def window_sharp_indices(num_frames: int, window: int) -> list[int]:
    """Offsets within a window of the ``num_frames`` sharp frames (evenly spaced, centred)."""
    if window < num_frames:
        raise ValueError(f"window ({window}) must be at least num_frames ({num_frames})")
    return [((2 * j + 1) * window) // (2 * num_frames) for j in range(num_frames)]


def plan_windows(
    total: int, window: int, stride: int, splits: Sequence[float] = (0.8, 0.1, 0.1), gap: int = 0
) -> list[tuple[str, int]]:
    """``(partition, first frame)`` of every window of a ``total``-frame video.

    The video is cut into contiguous chunks in the proportions ``splits`` (train, val, test); windows
    step by ``stride`` inside each chunk and never cross a chunk boundary. ``gap`` frames are skipped
    at the start of every chunk after the first.
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window} and {stride}")
    counts = split_counts(total, splits)
    plan: list[tuple[str, int]] = []
    start = 0
    for k, (name, count) in enumerate(zip(PARTITIONS, counts)):
        lo, hi = start + (gap if k > 0 else 0), start + count
        first = lo
        while first + window <= hi:
            plan.append((name, first))
            first += stride
        start += count
    return plan


def _is_folder(video: Path) -> bool:
    return video.is_dir()


def count_video_frames(video: str | Path) -> int:
    """Number of decodable frames of a video file (PyAV) or of image files in a folder.

    A file's frames are counted by decoding them: container headers can announce more frames than
    the stream holds (opencv-doc's ``tree.avi`` announces 444 and decodes 68).
    """
    video = Path(video)
    if _is_folder(video):
        return len(list_images(video))
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream))


def iter_video_frames(video: str | Path) -> Iterator[np.ndarray]:
    """Frames of a video file (decoded with PyAV) or a folder of images (natural order).

    Yields:
        float32 RGB frames in [0, 1], ``(H, W, 3)``.
    """
    video = Path(video)
    if _is_folder(video):
        for path in list_images(video):
            yield read_image(path)
        return
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            yield to_float(frame.to_ndarray(format="rgb24"))


def dataset_from_video(
    video: str | Path,
    out_dir: str | Path,
    num_frames: int = 7,
    subframes: int = 1,
    window: int | None = None,
    stride: int | None = None,
    gamma: float | None = 2.2,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    gap: int = 0,
    name: str | None = None,
    show_progress: bool = True,
) -> Path:
    """Build a blur dataset from a video by averaging windows of consecutive frames.

    Args:
        video: a video file (any format PyAV/FFmpeg decodes) or a folder of frame images.
        out_dir: output folder (created).
        num_frames: ``T`` sharp frames per sample.
        subframes: source frames per sharp frame ``m``; the default window is ``T * m``.
        window: frames averaged into one blurry image (default ``num_frames * subframes``).
        stride: frames between the starts of consecutive windows (default ``window``: no overlap).
        gamma: average in linear light with this display gamma (``None`` averages stored values).
        splits: fractions of the video, in order, for train, val and test.
        gap: frames skipped at the start of the val and test chunks.
        name: dataset name (default: the video's file name).
        show_progress: show a progress bar.

    Returns:
        Path of the written ``metadata.json``.

    Raises:
        ValueError: the video is too short for a single window.
    """
    video = Path(video)
    if not video.exists():
        raise FileNotFoundError(f"video not found: {video}")
    if num_frames < 3:
        raise ValueError(f"num_frames must be >= 3, got {num_frames}")
    window = num_frames * subframes if window is None else int(window)
    stride = window if stride is None else int(stride)
    offsets = window_sharp_indices(num_frames, window)
    total = count_video_frames(video)
    plan = plan_windows(total, window, stride, splits, gap)
    if not plan:
        raise ValueError(
            f"{video}: {total} frames give no window of {window} frames with splits {tuple(splits)}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    starts = {first: (k, part) for k, (part, first) in enumerate(plan)}
    buffer: deque[tuple[int, np.ndarray]] = deque(maxlen=window)
    records: list[SampleRecord] = []
    digits = max(5, int(math.log10(max(len(plan), 1))) + 1)
    frames = progress(iter_video_frames(video), total, "averaging windows", show_progress)
    for index, frame in enumerate(frames):
        buffer.append((index, frame))
        first = index - window + 1
        if first not in starts:
            continue
        k, part = starts[first]
        linear = np.zeros(frame.shape, dtype=np.float64)
        for _, f in buffer:
            linear += decode_gamma(f, gamma)
        blurry = encode_gamma((linear / window).astype(np.float32), gamma)
        sid = f"{k:0{digits}d}"
        blur_path = f"{sid}/blur.png"
        write_image(out / blur_path, blurry, compression=1)
        paths = []
        for j, off in enumerate(offsets):
            p = f"{sid}/sharp/{j + 1:03d}.png"
            write_image(out / p, buffer[off][1], compression=1)
            paths.append(p)
        records.append(
            SampleRecord(
                sid,
                blur_path,
                tuple(paths),
                partition=part,
                order="ignore",
                extra={"source_frames": [first, first + window]},
            )
        )
    if len(records) != len(plan):
        raise ValueError(
            f"{video}: decoded fewer frames than the {total} announced; wrote {len(records)} of {len(plan)} samples"
        )
    meta = DatasetMetadata(
        name=name or video.stem,
        frame_per_seq=num_frames,
        samples=records,
        extra={
            "generator": {
                "kind": "hypercut.video",
                "source": video.name,
                "window": window,
                "stride": stride,
                "gamma": gamma,
            }
        },
    )
    return write_metadata(meta, out / "metadata.json")

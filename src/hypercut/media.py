"""Writing predicted frame sequences: PNG frames, GIF, MP4 and frame strips.

Images are read by :mod:`hypercut.data.io`, the library's one reader.

Only numpy, Pillow and PyAV are needed; torch tensors are accepted wherever frames are (they are
converted with ``.detach().cpu().numpy()``), so this module works without importing torch.

Two frame layouts meet here:

* float frames, as the models produce them: ``(T, 3, H, W)`` in ``[0, 1]`` (tensor or array);
* ``uint8`` frames, as files store them: ``(T, H, W, 3)``.

Every writer accepts either; an array of dtype ``uint8`` is taken to be in the second layout, anything
else in the first.

Example:
    >>> import numpy as np
    >>> frames = np.random.default_rng(0).random((7, 3, 32, 48), dtype=np.float32)
    >>> to_uint8(frames).shape
    (7, 32, 48, 3)
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "frame_strip",
    "save_frames",
    "save_gif",
    "save_mp4",
    "to_uint8",
]

def _as_numpy(x: Any) -> np.ndarray:
    """An ndarray view of a numpy array or a torch tensor (on any device, any float dtype)."""
    if hasattr(x, "detach"):  # a torch tensor; numpy has no bfloat16, so widen to float32 first
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def to_uint8(frames: Any) -> np.ndarray:
    """Convert float frames in ``[0, 1]`` to ``uint8`` images, rounding and clipping.

    Args:
        frames: ``(T, 3, H, W)`` or a single ``(3, H, W)`` image, a tensor or an array, floats in
            ``[0, 1]`` (values outside are clipped, NaN becomes 0). ``uint8`` input in the file layout
            (``(T, H, W, 3)`` or ``(H, W, 3)``) is returned unchanged.

    Returns:
        ``(T, H, W, 3)`` (or ``(H, W, 3)``) ``uint8`` array, C-contiguous.

    Shape:
        - Input: :math:`(T, 3, H, W)` or :math:`(3, H, W)`
        - Output: :math:`(T, H, W, 3)` or :math:`(H, W, 3)`

    Example:
        >>> to_uint8(np.full((1, 3, 2, 2), 0.5)).ravel()[:3]
        array([128, 128, 128], dtype=uint8)
    """
    if hasattr(frames, "detach") and frames.is_floating_point():
        # A tensor: convert where it lives (multi-threaded, and a GPU sends back 4x fewer bytes).
        if frames.ndim not in (3, 4) or frames.shape[-3] != 3:
            raise ValueError(f"float frames must be (T, 3, H, W) or (3, H, W), got {tuple(frames.shape)}")
        scaled = frames.detach().float().mul(255.0).nan_to_num_(0.0).round_().clamp_(0.0, 255.0)
        return scaled.byte().movedim(-3, -1).contiguous().cpu().numpy()
    array = _as_numpy(frames)
    if array.dtype == np.uint8:
        if array.ndim not in (3, 4) or array.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be (T, H, W, 3) or (H, W, 3), got {array.shape}")
        return np.ascontiguousarray(array)
    if array.ndim not in (3, 4) or array.shape[-3] != 3:
        raise ValueError(f"float frames must be (T, 3, H, W) or (3, H, W), got {tuple(array.shape)}")
    scaled = np.nan_to_num(array.astype(np.float32) * 255.0, nan=0.0)
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(out, -3, -1))


def _frames_u8(frames: Any) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames from either layout, with at least one frame."""
    out = to_uint8(frames)
    if out.ndim != 4:
        raise ValueError(f"expected a sequence of frames, got a single image of shape {out.shape}")
    if out.shape[0] == 0:
        raise ValueError("expected at least one frame, got none")
    return out


def save_frames(frames: Any, folder: str | Path, prefix: str = "frame", compress_level: int = 1) -> list[Path]:
    """Write each frame as a lossless PNG: ``folder/frame_001.png``, ``frame_002.png``, ...

    Args:
        frames: float ``(T, 3, H, W)`` in ``[0, 1]`` or uint8 ``(T, H, W, 3)``.
        folder: destination folder (created, with its parents).
        prefix: file name prefix.
        compress_level: zlib level 0-9; 1 is up to 3x faster than Pillow's default 6 for files a
            few percent larger (PNG stays lossless at every level).

    Returns:
        The paths written, in frame order. Numbers have at least three digits (more when T > 999).

    Shape:
        - frames: :math:`(T, 3, H, W)` float or :math:`(T, H, W, 3)` uint8
    """
    images = _frames_u8(frames)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digits = max(3, len(str(len(images))))
    paths = []
    for index, image in enumerate(images, start=1):
        path = folder / f"{prefix}_{index:0{digits}d}.png"
        Image.fromarray(image).save(path, compress_level=compress_level)
        paths.append(path)
    return paths


def save_gif(frames: Any, path: str | Path, fps: float = 8.0, pingpong: bool = False) -> Path:
    """Write the frames as an endlessly looping GIF.

    GIF stores at most 256 colours and delays in hundredths of a second, so colours are approximate
    and the frame rate is rounded. One palette, chosen by octree quantisation of (a subsample of) all
    frames, serves every frame with Floyd-Steinberg dithering: no colour flicker between frames, and
    about 10x faster at 1280x720 than a median-cut palette per frame. Pillow merges a frame identical
    to the one before it into a single longer frame.

    Args:
        frames: float ``(T, 3, H, W)`` in ``[0, 1]`` or uint8 ``(T, H, W, 3)``.
        path: destination ``.gif`` file (parents created).
        fps: frames per second.
        pingpong: play forwards then backwards (``1..T..2``), which hides the jump from the last frame
            back to the first; the loop then has ``2T - 2`` frames.

    Returns:
        The path written.

    Shape:
        - frames: :math:`(T, 3, H, W)` float or :math:`(T, H, W, 3)` uint8
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    images = _frames_u8(frames)
    if pingpong and len(images) > 2:
        images = np.concatenate([images, images[-2:0:-1]])
    pil = _quantize_shared(images)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=pil[1:],
        duration=max(20, round(1000.0 / fps)),  # browsers slow delays under 20 ms down to 100 ms
        loop=0,
    )
    return path


def _quantize_shared(images: np.ndarray, sample_pixels: int = 1 << 18) -> list[Image.Image]:
    """Palette images sharing one 256-colour palette fitted to about ``sample_pixels`` pixels."""
    count, height, width = images.shape[:3]
    step = max(1, math.ceil(math.sqrt(count * height * width / sample_pixels)))
    mosaic = Image.fromarray(np.ascontiguousarray(np.concatenate(list(images[:, ::step, ::step]))))
    palette = mosaic.quantize(256, method=Image.Quantize.FASTOCTREE)
    return [Image.fromarray(image).quantize(palette=palette) for image in images]


def _pick_codec() -> str:
    """libx264 when this FFmpeg build has the encoder, else the always-present mpeg4."""
    import av

    try:
        av.codec.Codec("libx264", "w")
    except Exception:  # PyAV raises UnknownCodecError (a ValueError) or an FFmpeg error
        return "mpeg4"
    return "libx264"


def save_mp4(frames: Any, path: str | Path, fps: float = 8.0, codec: str | None = None) -> Path:
    """Write the frames as an H.264 (or MPEG-4 part 2) MP4 video with PyAV.

    The video uses ``yuv420p``, the pixel format every player understands, which needs an even width
    and height: an odd dimension is padded by one row or column replicating the last one, so the
    video may be one pixel wider or taller than the frames.

    Args:
        frames: float ``(T, 3, H, W)`` in ``[0, 1]`` or uint8 ``(T, H, W, 3)``.
        path: destination ``.mp4`` file (parents created).
        fps: frames per second (fractional rates are kept, e.g. ``7.5``).
        codec: FFmpeg encoder name; by default ``libx264`` (CRF 18, near-lossless to the eye) when
            available, else ``mpeg4`` at a high bit rate.

    Returns:
        The path written.

    Shape:
        - frames: :math:`(T, 3, H, W)` float or :math:`(T, H, W, 3)` uint8
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    images = _frames_u8(frames)
    height, width = images.shape[1:3]
    pad = ((0, 0), (0, height % 2), (0, width % 2), (0, 0))
    if any(after for _, after in pad):
        images = np.pad(images, pad, mode="edge")
    height, width = images.shape[1:3]
    import av  # PyAV only where videos are written or 16-bit PNGs read: the rest works without it
    from av.video.stream import VideoStream

    codec = codec or _pick_codec()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        if not isinstance(stream, VideoStream):
            raise ValueError(f"{path}: codec {codec!r} is not a video encoder")
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "fast"}  # as small as "medium" here, 40% faster
        else:
            # Enough bits for near-lossless frames at any size: about 4 bits a pixel per frame.
            stream.bit_rate = max(1_000_000, int(4 * width * height * fps))
        for image in images:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder's delayed frames
            container.mux(packet)
    return path


def frame_strip(
    blurry: Any,
    pred: Any,
    sharp: Any | None = None,
    separator: int = 2,
    background: int = 255,
) -> np.ndarray:
    """Lay out an input and its predicted (and optionally ground-truth) frames as one image.

    Row 1 holds the blurry image followed by the predicted frames; row 2, when ``sharp`` is given,
    holds an empty cell (under the blurry image) followed by the ground-truth frames. Cells are
    separated by ``separator`` pixels of ``background`` grey.

    Args:
        blurry: float ``(3, H, W)`` in ``[0, 1]`` or uint8 ``(H, W, 3)``.
        pred: float ``(T, 3, H, W)`` or uint8 ``(T, H, W, 3)``.
        sharp: same layout as ``pred``, or ``None``.
        separator: gap between cells in pixels.
        background: grey level (0-255) of the gaps and of the empty cell.

    Returns:
        ``(R*H + (R-1)*separator, (T+1)*W + T*separator, 3)`` uint8 image, ``R`` = 2 with ``sharp``
        else 1.

    Shape:
        - blurry: :math:`(3, H, W)`; pred, sharp: :math:`(T, 3, H, W)`
        - Output: :math:`(R H + (R-1) s, (T+1) W + T s, 3)`
    """
    image = to_uint8(blurry)
    if image.ndim != 3:
        raise ValueError(f"blurry must be a single image (3, H, W), got shape {image.shape}")
    rows = [np.concatenate([image[None], _frames_u8(pred)])]
    if sharp is not None:
        truth = _frames_u8(sharp)
        rows.append(np.concatenate([np.full_like(image[None], background), truth]))
    height, width = image.shape[:2]
    for name, row in zip(("pred", "sharp"), rows):
        if row.shape[1:3] != (height, width):
            raise ValueError(f"{name} frames are {row.shape[1:3]}, blurry is {(height, width)}")
    if len(rows) == 2 and len(rows[1]) != len(rows[0]):
        raise ValueError(f"sharp has {len(rows[1]) - 1} frames, pred has {len(rows[0]) - 1}")
    cols = len(rows[0])
    out = np.full(
        (len(rows) * height + (len(rows) - 1) * separator, cols * width + (cols - 1) * separator, 3),
        background,
        dtype=np.uint8,
    )
    for r, row in enumerate(rows):
        top = r * (height + separator)
        for c, cell in enumerate(row):
            left = c * (width + separator)
            out[top : top + height, left : left + width] = cell
    return out

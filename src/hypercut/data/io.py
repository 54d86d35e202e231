"""Image reading and writing for datasets.

Every reader returns RGB: grey images are repeated over three channels and an alpha channel is
dropped (datasets of frames have no meaningful transparency). Decoding goes through OpenCV with
``IMREAD_UNCHANGED`` because Pillow silently truncates 16-bit RGB PNGs to 8 bits; Pillow is the
fallback for formats OpenCV cannot decode.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "image_bit_depth",
    "image_size",
    "read_image",
    "read_image_raw",
    "to_float",
    "write_image",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File suffixes (lower case) treated as images when scanning a folder."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# OpenCV >= 4.10: decode straight to RGB (grey expanded, alpha dropped), keeping 16-bit depth;
# EXIF orientation is ignored, as Pillow and the header-based size checks do.
_IMREAD_RGB = (
    cv2.IMREAD_COLOR_RGB | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
    if hasattr(cv2, "IMREAD_COLOR_RGB")
    else None
)


class ImageReadError(OSError):
    """An image file is missing or cannot be decoded; the message names the file."""


def _to_rgb(img: np.ndarray, path: Path) -> np.ndarray:
    """OpenCV channel layout (grey, grey+alpha, BGR, BGRA) to a (H, W, 3) RGB view."""
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 2:  # grey + alpha
        return np.repeat(img[:, :, :1], 3, axis=2)
    if img.ndim == 3 and img.shape[2] in (3, 4):
        return img[:, :, 2::-1]  # BGR(A) -> RGB, alpha dropped
    raise ImageReadError(f"{path}: unsupported image layout {img.shape}")


def _read_pillow(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
            return np.repeat(np.asarray(im, dtype=np.uint16)[:, :, None], 3, axis=2)
        if im.mode == "I":  # 32-bit container Pillow uses for some 16-bit greys
            arr = np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
            return np.repeat(arr[:, :, None], 3, axis=2)
        return np.asarray(im.convert("RGB"))


def read_image_raw(path: str | Path) -> np.ndarray:
    """Read an image as RGB integers, keeping its bit depth.

    Args:
        path: an image file (PNG 8/16-bit, JPEG, BMP, TIFF, WebP; grey, grey+alpha, RGB, RGBA).

    Returns:
        A C-contiguous ``uint8`` or ``uint16`` array.

    Shape:
        ``(H, W, 3)``.

    Raises:
        ImageReadError: the file is missing or cannot be decoded.
    """
    path = Path(path)
    if _IMREAD_RGB is not None:  # decoder emits RGB directly: no extra full-image copy
        img = cv2.imread(str(path), _IMREAD_RGB)
        if img is not None and img.dtype in (np.uint8, np.uint16):
            return img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        if not path.is_file():
            raise ImageReadError(f"{path}: file not found")
        try:
            return np.ascontiguousarray(_read_pillow(path))
        except Exception as exc:  # noqa: BLE001 - any decoder failure becomes one clear error
            raise ImageReadError(f"{path}: cannot decode image: {exc}") from exc
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{path}: unsupported sample type {img.dtype} (expected 8 or 16 bits)")
    return np.ascontiguousarray(_to_rgb(img, path))


def to_float(raw: np.ndarray) -> np.ndarray:
    """Integer image to float32 in [0, 1]: ``uint8`` divides by 255, ``uint16`` by 65535.

    Shape:
        any shape; the output has the input's shape.
    """
    if raw.dtype == np.uint8:
        return np.multiply(raw, np.float32(1.0 / 255.0), dtype=np.float32)
    if raw.dtype == np.uint16:
        return np.multiply(raw, np.float32(1.0 / 65535.0), dtype=np.float32)
    if raw.dtype == np.float32:
        return raw
    raise TypeError(f"expected a uint8, uint16 or float32 image, got {raw.dtype}")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB float32 in [0, 1].

    Args:
        path: an image file; 16-bit PNGs keep their precision (divided by 65535).

    Returns:
        float32 array.

    Shape:
        ``(H, W, 3)``.

    Raises:
        ImageReadError: the file is missing or cannot be decoded.

    Example:
        >>> img = read_image("00000/blur.png")  # doctest: +SKIP
        >>> img.shape, img.dtype  # doctest: +SKIP
        ((720, 1280, 3), dtype('float32'))
    """
    return to_float(read_image_raw(path))


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image, read from its header only.

    Raises:
        ImageReadError: the file is missing or not a readable image.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: file not found") from exc
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(f"{path}: cannot read image header: {exc}") from exc
    return height, width


def image_bit_depth(path: str | Path) -> int:
    """Bits per sample of an image file (8 or 16), from its header.

    Pillow reports 16-bit RGB PNGs as 8-bit ``RGB``, so PNG headers are parsed directly.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(26)
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        (depth,) = struct.unpack(">B", head[24:25])
        return 16 if depth == 16 else 8
    try:
        with Image.open(path) as im:
            return 16 if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I") else 8
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(f"{path}: cannot read image header: {exc}") from exc


def write_image(path: str | Path, image: np.ndarray, bit_depth: int = 8, compression: int = 3) -> None:
    """Write an RGB image, creating parent folders.

    Args:
        path: output file; the suffix picks the format (``.png`` supports ``bit_depth=16``).
        image: float in [0, 1] (rounded to ``bit_depth`` bits), or ``uint8``/``uint16``
            written as is.
        bit_depth: 8 or 16, used for float input.
        compression: PNG compression level 0-9 (lower is faster, files are larger).

    Shape:
        ``image``: ``(H, W, 3)`` or ``(H, W)``.
    """
    path = Path(path)
    if np.issubdtype(image.dtype, np.floating):
        if bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
        peak = 255.0 if bit_depth == 8 else 65535.0
        dtype = np.uint8 if bit_depth == 8 else np.uint16
        image = (np.clip(image, 0.0, 1.0) * peak + 0.5).astype(dtype)
    elif image.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"{path}: cannot write an image of type {image.dtype}")
    if image.ndim == 3:
        image = image[:, :, ::-1]  # RGB -> BGR for OpenCV
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_PNG_COMPRESSION, int(compression)] if path.suffix.lower() == ".png" else []
    if not cv2.imwrite(str(path), np.ascontiguousarray(image), params):
        raise OSError(f"{path}: cannot write image")

"""The one image reader of the library: datasets, the packed store, prediction folders and
``hypercut-infer`` all decode through :func:`read_image_raw`.

One policy for every caller:

- **Complete files only.** A truncated or corrupt file raises :class:`ImageReadError` naming it (a
  JPEG cut short is never returned with grey rows, as OpenCV alone would do).
- **RGB out.** Grey images are repeated over three channels, palettes expanded; 16-bit files keep
  their 16 bits.
- **Alpha is composited over white**, as an image viewer shows the file.
- **EXIF orientation is applied**, so a photo comes out the way it is displayed;
  :func:`image_size` reports that displayed size.
- **One suffix list** (:data:`IMAGE_SUFFIXES`) and **one natural sort** (:func:`list_images`:
  ``2.png`` before ``10.png``).

PNG (the format of datasets), JPEG and TIFF are decoded by OpenCV, which keeps 16-bit colour and
is the faster decoder; it fails on a truncated PNG or TIFF, and a JPEG is first checked for the end
marker that a cut file lacks (OpenCV would return it with grey rows). Other formats are decoded by
Pillow, which raises on a truncated file. Pillow reads the header of every file, for its format,
alpha and orientation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageHeader",
    "ImageReadError",
    "image_bit_depth",
    "image_size",
    "list_images",
    "read_header",
    "read_image",
    "read_image_raw",
    "to_float",
    "write_image",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File suffixes (lower case, matched case-insensitively) treated as images when listing a folder."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"
_ORIENTATION_TAG = 0x0112
# Decoded by OpenCV: it keeps 16-bit colour (Pillow reduces it to 8 bits) and is faster. It fails on
# truncated PNG and TIFF files; a JPEG is checked for its end marker first.
_OPENCV_FORMATS = ("PNG", "TIFF", "JPEG")
# OpenCV >= 4.10: decode straight to RGB keeping 16-bit depth, without an extra full-image copy.
_IMREAD_RGB = (
    cv2.IMREAD_COLOR_RGB | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
    if hasattr(cv2, "IMREAD_COLOR_RGB")
    else None
)


class ImageReadError(OSError):
    """An image file is missing, not an image, truncated or corrupt; the message names the file."""


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, as :func:`read_image_raw` will return it.

    Attributes:
        height: displayed height (after the EXIF orientation).
        width: displayed width.
        bit_depth: 8 or 16 bits per sample.
        format: Pillow's format name (``PNG``, ``JPEG``, ...).
        has_alpha: the file has an alpha channel or a transparent colour.
        orientation: EXIF orientation, 1 (none) to 8.
    """

    height: int
    width: int
    bit_depth: int
    format: str
    has_alpha: bool
    orientation: int


def _orientation(image: Image.Image) -> int:
    if image.format == "PNG" and "exif" not in image.info:
        return 1  # Pillow would decode the whole PNG looking for an eXIf chunk after the pixels
    try:
        value = int(image.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block does not make the pixels unreadable
        return 1
    return value if 1 <= value <= 8 else 1


def _header_of(image: Image.Image, path: Path) -> ImageHeader:
    width, height = image.size
    orientation = _orientation(image)
    if orientation >= 5:  # transposed or rotated by 90 degrees
        width, height = height, width
    fmt = image.format or ""
    if fmt == "PNG":  # Pillow reports 16-bit colour PNGs as 8-bit RGB: read IHDR's bit depth
        with open(path, "rb") as fh:
            head = fh.read(26)
        depth = 16 if head[:8] == _PNG_SIGNATURE and head[24] == 16 else 8
    elif fmt == "TIFF":
        bits = image.tag_v2.get(258, (8,))  # type: ignore[attr-defined]
        depth = 16 if max(bits if isinstance(bits, tuple) else (bits,)) > 8 else 8
    else:
        depth = 16 if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F") else 8
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    return ImageHeader(height, width, depth, fmt, has_alpha, orientation)


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    try:
        return Image.open(path)
    except Exception as exc:  # noqa: BLE001 - Pillow raises UnidentifiedImageError, OSError, SyntaxError...
        raise ImageReadError(f"{path}: not a readable image: {exc}") from exc


def _check_complete(path: Path, image: Image.Image) -> None:
    """The file is as long as its format requires.

    PNG must end with the IEND chunk. A JPEG's end-of-image marker must follow its first scan (the
    marker cannot occur inside the compressed data; one in an EXIF thumbnail comes before); data
    appended after the image, as in motion photos, is allowed.
    """
    fmt = image.format
    if fmt not in ("PNG", "JPEG", "MPO"):
        return
    with open(path, "rb") as fh:
        if fmt == "PNG":
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - len(_PNG_END)))
            complete = fh.read() == _PNG_END
        else:
            complete = _seek_jpeg_scan(fh) and _JPEG_END in fh.read()
            size = fh.seek(0, 2)
    if not complete:
        raise ImageReadError(f"{path}: truncated {fmt} file ({size} bytes, its end marker is missing)")


def _seek_jpeg_scan(fh: BinaryIO) -> bool:
    """Move ``fh`` past the segments before a JPEG's first scan (start-of-scan marker); False if none."""
    fh.seek(2)  # after the start-of-image marker
    while True:
        marker = fh.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return False
        if marker[1] == 0xFF:  # fill byte before a marker
            fh.seek(-1, 1)
        elif marker[1] == 0xDA:
            return True
        elif not (marker[1] == 0x01 or 0xD0 <= marker[1] <= 0xD8):  # these markers have no length
            length = fh.read(2)
            if len(length) < 2:
                return False
            fh.seek(int.from_bytes(length, "big") - 2, 1)


def read_header(path: str | Path) -> ImageHeader:
    """Read an image's header and check that the file is complete, without decoding the pixels.

    Catches a missing file, an empty or non-image file (e.g. text named ``.png``) and a PNG or JPEG
    cut short; corrupt pixel data inside a complete file is only found by decoding it.

    Raises:
        ImageReadError: naming the file.
    """
    path = Path(path)
    with _open(path) as image:
        header = _header_of(image, path)
        _check_complete(path, image)
    return header


def _from_pillow(image: Image.Image, path: Path) -> np.ndarray:
    """Decode a Pillow image to ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8/uint16."""
    try:
        image.load()  # decode now: Pillow raises on a truncated file here
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(f"{path}: cannot decode image (truncated or corrupt): {exc}") from exc
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.uint16)
    if image.mode == "I":  # a 32-bit container Pillow uses for some 16-bit greys
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return np.asarray(image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))


def _from_opencv(path: Path, has_alpha: bool) -> np.ndarray:
    """Decode with OpenCV to ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` RGB(A) uint8/uint16."""
    if _IMREAD_RGB is not None and not has_alpha:
        img = cv2.imread(str(path), _IMREAD_RGB)
        if img is not None and img.dtype in (np.uint8, np.uint16):
            return img
    else:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is not None and img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    if img is None:
        raise ImageReadError(f"{path}: cannot decode image (truncated or corrupt)")
    if img.dtype == np.float32:  # float TIFF, taken to be in [0, 1]
        img = (np.clip(np.nan_to_num(img), 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{path}: unsupported sample type {img.dtype} (expected 8 or 16 bits)")
    return img


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (the same result as ``PIL.ImageOps.exif_transpose``).

    Shape:
        ``(H, W, C)`` in; ``(W, H, C)`` out for orientations 5 to 8.
    """
    if orientation == 2:
        return img[:, ::-1]
    if orientation == 3:
        return img[::-1, ::-1]
    if orientation == 4:
        return img[::-1]
    if orientation == 5:
        return img.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(img, -1)
    if orientation == 7:
        return img[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(img, 1)
    return img


def _to_rgb(img: np.ndarray, path: Path) -> np.ndarray:
    """Grey, grey + alpha, RGB or RGBA to ``(H, W, 3)`` RGB; alpha composited over white."""
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels in (2, 4):
        peak = np.iinfo(img.dtype).max
        colour = img[:, :, :-1].astype(np.uint64)
        alpha = img[:, :, -1:].astype(np.uint64)
        img = ((colour * alpha + peak * (peak - alpha) + peak // 2) // peak).astype(img.dtype)
        channels -= 1
    if channels == 1:
        return np.repeat(img, 3, axis=2)
    if channels == 3:
        return img
    raise ImageReadError(f"{path}: unsupported image layout {img.shape}")


def read_image_raw(path: str | Path) -> np.ndarray:
    """Read an image as RGB integers, keeping its bit depth (see the module docstring for the policy).

    Args:
        path: an image file (PNG 8/16-bit, JPEG, BMP, TIFF, WebP; grey, palette, alpha).

    Returns:
        A C-contiguous ``uint8`` or ``uint16`` array.

    Shape:
        ``(H, W, 3)``, the displayed size.

    Raises:
        ImageReadError: the file is missing, not an image, truncated or corrupt.
    """
    path = Path(path)
    with _open(path) as image:
        header = _header_of(image, path)
        if header.format == "JPEG":
            _check_complete(path, image)  # OpenCV returns a cut JPEG with grey rows
        if header.format not in _OPENCV_FORMATS:
            img = _from_pillow(image, path)
        else:
            try:
                img = _from_opencv(path, header.has_alpha)
            except ImageReadError:
                if header.format != "TIFF":
                    raise
                img = _from_pillow(image, path)  # a TIFF compression OpenCV lacks; Pillow fails on cut files too
    return np.ascontiguousarray(_orient(_to_rgb(img, path), header.orientation))


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
    """Read an image as RGB float32 in [0, 1] (16-bit files divided by 65535).

    Returns:
        float32 array.

    Shape:
        ``(H, W, 3)``.

    Raises:
        ImageReadError: the file is missing, not an image, truncated or corrupt.

    Example:
        >>> img = read_image("00000/blur.png")  # doctest: +SKIP
        >>> img.shape, img.dtype  # doctest: +SKIP
        ((720, 1280, 3), dtype('float32'))
    """
    return to_float(read_image_raw(path))


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image as :func:`read_image_raw` returns it, from its header.

    Raises:
        ImageReadError: the file is missing or not a readable image.
    """
    with _open(Path(path)) as image:
        header = _header_of(image, Path(path))
    return header.height, header.width


def image_bit_depth(path: str | Path) -> int:
    """Bits per sample of an image file (8 or 16), from its header."""
    with _open(Path(path)) as image:
        return _header_of(image, Path(path)).bit_depth


def _natural_key(path: Path) -> list[Any]:
    return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", path.as_posix()) if t]


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """The image files of a folder (suffix in :data:`IMAGE_SUFFIXES`, any case; hidden files skipped).

    Args:
        folder: the folder to list.
        recursive: also list sub-folders.

    Returns:
        The files in natural order of their path relative to ``folder`` (``2.png`` before ``10.png``).
    """
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    files = [
        p
        for p in folder.glob(pattern)
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda p: _natural_key(p.relative_to(folder)))


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

"""Paired augmentation: one random draw shared by the blurry image and all its sharp frames.

A paired transform is a callable ``transform(blurry, sharp, rng) -> (blurry, sharp)`` on float32
arrays, ``blurry`` ``(H, W, 3)`` and ``sharp`` ``(T, H, W, 3)``, drawing its randomness from the
``numpy.random.Generator`` it is given (the dataset owns one per worker process). Transforms that
also define ``crop_box(height, width, rng)`` and ``augment_crop(blurry, sharp, rng)`` let the packed
store cut the crop straight out of its memory map before anything else is done;
``transform(b, s, rng)`` is exactly ``crop_box`` + slicing + ``augment_crop``, so both stores give
the same pixels for the same generator state.

Geometry and colour go through albumentations 2.x with the ``images=`` target (the blurry image is
stacked in front of the frames), so flips, the affine jitter and the colour jitter use one parameter
draw for all ``T + 1`` images. The random crop is plain slicing (exact, and what the packed store
needs). The affine jitter runs after the crop, filling the few uncovered corner pixels by
reflection. Gaussian noise is added to the blurry input only: it models sensor noise on the
observation, and the targets the network must reproduce stay clean.
"""

from __future__ import annotations

import os
import random

import numpy as np

__all__ = ["CenterCropMultiple", "PairedAugment", "crop_shape"]


def _pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def crop_shape(
    height: int, width: int, crop_size: int | tuple[int, int] | None, multiple: int = 1
) -> tuple[int, int]:
    """Size of the crop taken from a ``height x width`` image.

    The crop is ``crop_size`` (the full image when ``None``), each side rounded down to a multiple of
    ``multiple`` (e.g. 20 for the ``jin`` backbone: 256 becomes 240).

    Raises:
        ValueError: the crop does not fit in the image, or rounds down to zero.
    """
    if multiple < 1:
        raise ValueError(f"crop multiple must be >= 1, got {multiple}")
    ch, cw = (height, width) if crop_size is None else _pair(crop_size)
    ch, cw = ch // multiple * multiple, cw // multiple * multiple
    if ch <= 0 or cw <= 0:
        raise ValueError(f"crop {crop_size} rounded down to a multiple of {multiple} is empty")
    if ch > height or cw > width:
        raise ValueError(f"crop {ch}x{cw} does not fit in a {height}x{width} image")
    return ch, cw


class PairedAugment:
    """Training augmentation: random crop, flips, small affine, colour jitter, input noise.

    Args:
        crop_size: crop side (int) or ``(height, width)``; ``None`` keeps the full image.
        crop_multiple: round the crop down to a multiple of this (20 for ``jin``).
        hflip: flip left-right with probability 1/2.
        vflip: flip up-down with probability 1/2.
        affine: with probability 1/2, apply a small rotation/scale/translation (after the crop).
        rotate: maximum rotation in degrees for ``affine``.
        scale: scale range for ``affine``.
        translate: maximum translation for ``affine``, as a fraction of the crop size.
        color_jitter: brightness, contrast and saturation jitter strength (0 disables it).
        hue: hue jitter (fraction of the colour wheel); defaults to ``color_jitter / 5``.
        noise_std: Gaussian noise on the blurry image, std drawn in ``[0, noise_std]`` (0 disables).

    Example:
        >>> aug = PairedAugment(crop_size=64, crop_multiple=20)
        >>> rng = np.random.default_rng(0)
        >>> b, s = aug(np.zeros((100, 120, 3), np.float32), np.zeros((7, 100, 120, 3), np.float32), rng)
        >>> b.shape, s.shape
        ((60, 60, 3), (7, 60, 60, 3))
    """

    def __init__(
        self,
        crop_size: int | tuple[int, int] | None = 256,
        crop_multiple: int = 1,
        hflip: bool = True,
        vflip: bool = False,
        affine: bool = False,
        rotate: float = 5.0,
        scale: tuple[float, float] = (0.95, 1.05),
        translate: float = 0.02,
        color_jitter: float = 0.0,
        hue: float | None = None,
        noise_std: float = 0.0,
    ) -> None:
        self.crop_size = None if crop_size is None else _pair(crop_size)
        self.crop_multiple = int(crop_multiple)
        if self.crop_multiple < 1:
            raise ValueError(f"crop_multiple must be >= 1, got {crop_multiple}")
        self.hflip, self.vflip, self.affine = bool(hflip), bool(vflip), bool(affine)
        self.rotate, self.scale, self.translate = float(rotate), tuple(scale), float(translate)
        self.color_jitter = float(color_jitter)
        self.hue = self.color_jitter / 5 if hue is None else float(hue)
        self.noise_std = float(noise_std)
        self._paired = None
        self._noise = None
        self._build()

    def _build(self) -> None:
        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # it phones home otherwise
        ops: list = []
        if not (self.hflip or self.vflip or self.affine or self.color_jitter > 0 or self.noise_std > 0):
            return
        import albumentations as A
        import cv2

        if self.hflip:
            ops.append(A.HorizontalFlip(p=0.5))
        if self.vflip:
            ops.append(A.VerticalFlip(p=0.5))
        if self.affine:
            ops.append(
                A.Affine(
                    rotate=(-self.rotate, self.rotate),
                    scale=self.scale,
                    translate_percent=(-self.translate, self.translate),
                    interpolation=cv2.INTER_LINEAR,
                    border_mode=cv2.BORDER_REFLECT_101,
                    p=0.5,
                )
            )
        if self.color_jitter > 0:
            j = self.color_jitter
            ops.append(
                A.ColorJitter(
                    brightness=(max(0.0, 1 - j), 1 + j),
                    contrast=(max(0.0, 1 - j), 1 + j),
                    saturation=(max(0.0, 1 - j), 1 + j),
                    hue=(-self.hue, self.hue),
                    p=1.0,
                )
            )
        if ops:
            self._paired = A.Compose(ops, p=1.0)
        if self.noise_std > 0:
            self._noise = A.Compose(
                [A.GaussNoise(std_range=(0.0, self.noise_std), mean_range=(0.0, 0.0), p=1.0)], p=1.0
            )

    def __getstate__(self) -> dict:
        # Albumentations objects are rebuilt in each worker rather than pickled.
        state = self.__dict__.copy()
        state["_paired"] = state["_noise"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._build()

    def crop_box(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """Draw a crop ``(top, left, crop_height, crop_width)`` for a ``height x width`` image."""
        ch, cw = crop_shape(height, width, self.crop_size, self.crop_multiple)
        top = int(rng.integers(0, height - ch + 1))
        left = int(rng.integers(0, width - cw + 1))
        return top, left, ch, cw

    def augment_crop(
        self, blurry: np.ndarray, sharp: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Everything but the crop, on already cropped float32 arrays.

        Shape:
            ``blurry`` ``(h, w, 3)``, ``sharp`` ``(T, h, w, 3)``; outputs keep their shapes.
        """
        if self._paired is not None:
            stack = np.concatenate([blurry[None], sharp], axis=0)
            self._paired.set_random_state(rng, random.Random(int(rng.integers(2**63))))
            stack = self._paired(images=stack)["images"]
            blurry, sharp = stack[0], stack[1:]
        if self._noise is not None:
            self._noise.set_random_state(rng, random.Random(int(rng.integers(2**63))))
            blurry = np.clip(self._noise(image=np.ascontiguousarray(blurry))["image"], 0.0, 1.0)
        return blurry, sharp

    def __call__(
        self, blurry: np.ndarray, sharp: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Crop, then augment; see the class docstring.

        Shape:
            ``blurry`` ``(H, W, 3)``, ``sharp`` ``(T, H, W, 3)`` ->
            ``(h, w, 3)``, ``(T, h, w, 3)`` with ``(h, w)`` the crop size.
        """
        top, left, ch, cw = self.crop_box(blurry.shape[0], blurry.shape[1], rng)
        blurry = blurry[top : top + ch, left : left + cw]
        sharp = sharp[:, top : top + ch, left : left + cw]
        return self.augment_crop(blurry, sharp, rng)

    def __repr__(self) -> str:
        return (
            f"PairedAugment(crop_size={self.crop_size}, crop_multiple={self.crop_multiple}, "
            f"hflip={self.hflip}, vflip={self.vflip}, affine={self.affine}, "
            f"color_jitter={self.color_jitter}, noise_std={self.noise_std})"
        )


class CenterCropMultiple:
    """Evaluation transform: centre crop so that each side is a multiple of ``multiple``.

    With ``multiple=1`` it is the identity (full-resolution evaluation).

    Args:
        multiple: side multiple, e.g. 20 for ``jin`` if it should not pad.
    """

    def __init__(self, multiple: int = 1) -> None:
        if multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {multiple}")
        self.multiple = int(multiple)

    def crop_box(
        self, height: int, width: int, rng: np.random.Generator | None = None
    ) -> tuple[int, int, int, int]:
        """The centred crop ``(top, left, crop_height, crop_width)``; ``rng`` is unused."""
        ch, cw = crop_shape(height, width, None, self.multiple)
        return (height - ch) // 2, (width - cw) // 2, ch, cw

    def augment_crop(
        self, blurry: np.ndarray, sharp: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Identity."""
        return blurry, sharp

    def __call__(
        self, blurry: np.ndarray, sharp: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Centre-crop ``blurry`` ``(H, W, 3)`` and ``sharp`` ``(T, H, W, 3)`` alike."""
        top, left, ch, cw = self.crop_box(blurry.shape[0], blurry.shape[1])
        return blurry[top : top + ch, left : left + cw], sharp[:, top : top + ch, left : left + cw]

    def __repr__(self) -> str:
        return f"CenterCropMultiple({self.multiple})"

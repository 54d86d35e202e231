"""Procedural blur datasets with natural-image statistics.

A scene is a background layer and 1-3 foreground objects, each an RGBA texture with an affine pose
per sub-frame:

- textures: flat colour regions with sharp boundaries (thresholded smooth noise, plus random
  polygons and rectangles on the background), modulated by 1/f ("pink") luminance noise and a little
  chroma noise;
- objects: random polygons or ellipses (anti-aliased masks) that translate along a curved path
  (10-25 % of the image width over the exposure by default), rotate and scale, occluding one another;
- background: panned by the camera with a small rotation and high-frequency shake.

The exposure is sampled at ``T * m`` sub-frames (``m = subframes``, odd). Sub-frames are rendered and
composited in linear light; the blurry image is their mean, gamma-encoded
(``encode(mean(decode(.)))``); sharp frame ``j`` is the middle sub-frame of segment ``j``, i.e.
sub-frame ``j * m + m // 2``. :func:`render_subframes` exposes the renderer so this can be checked.

Rendering warps each layer with ``cv2.warpAffine`` (objects only inside their bounding box), about
20 ms per 256x256 sample with 35 sub-frames on one core.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw

from hypercut.data._progress import progress
from hypercut.data.io import write_image
from hypercut.data.metadata import PARTITIONS, DatasetMetadata, SampleRecord, write_metadata

__all__ = [
    "Layer",
    "Scene",
    "SynthSample",
    "decode_gamma",
    "encode_gamma",
    "random_scene",
    "render_sample",
    "render_subframes",
    "sharp_indices",
    "split_counts",
    "synthesize_dataset",
    "synthesize_sample",
]


def _power(x: np.ndarray, exponent: float) -> np.ndarray:
    x = np.ascontiguousarray(np.clip(x, 0.0, 1.0), dtype=np.float32)
    flat = x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x.reshape(1, -1)
    return cv2.pow(flat, exponent).reshape(x.shape)  # SIMD; 4x faster than np.power


def decode_gamma(x: np.ndarray, gamma: float | None) -> np.ndarray:
    """Display values to linear light: ``x ** gamma`` (identity for ``None`` or 1)."""
    x = np.asarray(x, dtype=np.float32)
    if gamma is None or gamma == 1:
        return x
    return _power(x, float(gamma))


def encode_gamma(x: np.ndarray, gamma: float | None) -> np.ndarray:
    """Linear light to display values: ``x ** (1 / gamma)`` (identity for ``None`` or 1)."""
    x = np.asarray(x, dtype=np.float32)
    if gamma is None or gamma == 1:
        return x
    return _power(x, 1.0 / float(gamma))


def sharp_indices(num_frames: int, subframes: int) -> list[int]:
    """Sub-frame index of each sharp frame: the middle of each of the ``num_frames`` segments."""
    if subframes < 1 or subframes % 2 == 0:
        raise ValueError(f"subframes must be odd (the middle sub-frame is the sharp frame), got {subframes}")
    return [j * subframes + subframes // 2 for j in range(num_frames)]


def split_counts(n: int, splits: Sequence[float]) -> list[int]:
    """Samples per partition for fractions ``splits`` (train, val, test) summing to ``n``.

    Every partition with a positive fraction gets at least one sample when ``n`` allows it.
    """
    if len(splits) != len(PARTITIONS) or any(f < 0 for f in splits) or sum(splits) <= 0:
        raise ValueError(
            f"splits must be {len(PARTITIONS)} non-negative fractions (train, val, test), got {splits}"
        )
    total = float(sum(splits))
    counts = [int(round(n * f / total)) for f in splits]
    counts[0] = n - sum(counts[1:])
    for k, f in enumerate(splits):  # give an empty wanted partition one sample from the largest
        if f > 0 and counts[k] == 0 and n >= sum(1 for g in splits if g > 0):
            big = int(np.argmax(counts))
            counts[big] -= 1
            counts[k] += 1
    if counts[0] < 0:
        counts[0] = 0
    return counts


# -- textures -------------------------------------------------------------------------------------
def _fractal_noise(rng: np.random.Generator, h: int, w: int, beta: float) -> np.ndarray:
    """Zero-mean, unit-std noise with amplitude spectrum ``1 / f ** beta``."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))) / f**beta
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=(h, w)).astype(np.float32)
    std = float(field.std())
    return field / std if std > 0 else field


def _palette(rng: np.random.Generator, k: int) -> np.ndarray:
    colours = []
    for _ in range(k):
        hue = rng.random()
        sat = rng.uniform(0.05, 0.9) ** 1.5
        val = rng.uniform(0.12, 0.95)
        colours.append(colorsys.hsv_to_rgb(hue, sat, val))
    return np.asarray(colours, dtype=np.float32)


def _random_polygon(
    rng: np.random.Generator, cx: float, cy: float, radius: float
) -> list[tuple[float, float]]:
    n = int(rng.integers(3, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * rng.uniform(0.45, 1.0, n)
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a, r in zip(angles, radii)]


def _texture(rng: np.random.Generator, h: int, w: int, shapes: int = 0) -> np.ndarray:
    """A display-space colour texture ``(h, w, 3)`` in [0, 1]: flat regions, edges, 1/f detail."""
    k = int(rng.integers(1, 5))
    colours = _palette(rng, k + max(shapes, 0))
    if k > 1:
        field = _fractal_noise(rng, h, w, beta=rng.uniform(1.8, 2.8))
        edges = np.quantile(field, np.sort(rng.uniform(0.1, 0.9, k - 1)))
        labels = np.searchsorted(edges, field)
        tex = colours[labels]
    else:
        tex = np.broadcast_to(colours[0], (h, w, 3)).copy()
    if shapes > 0:  # man-made structure: flat polygons and rectangles with straight edges
        canvas = Image.fromarray((tex * 255).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        for s in range(int(rng.integers(0, shapes + 1))):
            colour = tuple(int(c * 255) for c in colours[k + s])
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            r = rng.uniform(0.05, 0.25) * min(h, w)
            if rng.random() < 0.5:
                draw.polygon(_random_polygon(rng, cx, cy, r), fill=colour)
            else:
                draw.rectangle([cx - r, cy - r * rng.uniform(0.2, 1.0), cx + r, cy + r], fill=colour)
        tex = np.asarray(canvas, dtype=np.float32) / 255.0
    amplitude = rng.uniform(0.0, 0.3) if rng.random() < 0.8 else 0.0
    if amplitude > 0:
        lum = _fractal_noise(rng, h, w, beta=rng.uniform(0.8, 1.5))
        tex = tex * (1.0 + amplitude * lum[:, :, None])
    chroma = rng.uniform(0.0, 0.04)
    if chroma > 0:
        tex = tex + chroma * _fractal_noise(rng, h, w, beta=1.5)[:, :, None] * rng.standard_normal(3).astype(
            np.float32
        )
    return np.clip(tex, 0.0, 1.0).astype(np.float32)


def _object_mask(rng: np.random.Generator, size: int, supersample: int = 4) -> np.ndarray:
    """Anti-aliased polygon or ellipse mask ``(size, size)`` in [0, 1]."""
    big = size * supersample
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    c, r = big / 2, big / 2 - 2 * supersample
    if rng.random() < 0.6:
        draw.polygon(_random_polygon(rng, c, c, r), fill=255)
    else:
        ry = r * rng.uniform(0.35, 1.0)
        draw.ellipse([c - r, c - ry, c + r, c + ry], fill=255)
    mask = cv2.resize(np.asarray(img, dtype=np.float32) / 255.0, (size, size), interpolation=cv2.INTER_AREA)
    return mask


# -- scenes ---------------------------------------------------------------------------------------
@dataclass
class Layer:
    """An RGBA texture and its pose per sub-frame.

    Attributes:
        texture: linear-light RGB premultiplied by alpha, plus alpha; float32 ``(h, w, 4)``
            (alpha is 1 everywhere for the background).
        matrices: per sub-frame, the affine map from output pixel ``(x, y)`` to texture pixel
            coordinates (the inverse warp); float64 ``(N, 2, 3)``.
    """

    texture: np.ndarray
    matrices: np.ndarray


@dataclass
class Scene:
    """A background and foreground objects (back to front) over ``N`` sub-frames."""

    height: int
    width: int
    background: Layer
    objects: list[Layer]

    @property
    def num_subframes(self) -> int:
        """``N``, the number of sub-frames."""
        return int(self.background.matrices.shape[0])


def _rotation(theta: np.ndarray) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (N, 2, 2)


def random_scene(
    rng: np.random.Generator,
    size: tuple[int, int] = (256, 256),
    num_subframes: int = 35,
    num_objects: tuple[int, int] = (1, 3),
    motion: tuple[float, float] = (0.10, 0.25),
    rotation: float = 25.0,
    scale_change: float = 0.15,
    curvature: float = 0.5,
    camera_motion: float = 0.06,
    camera_rotation: float = 1.5,
    shake: float = 1.5,
    gamma: float | None = 2.2,
) -> Scene:
    """Draw a random scene.

    Args:
        rng: source of randomness.
        size: ``(height, width)`` of the rendered images.
        num_subframes: number of sub-frames ``N`` over the exposure.
        num_objects: inclusive range of the number of foreground objects.
        motion: range of the distance an object's centre travels over the exposure, as a fraction
            of the image width.
        rotation: maximum object rotation over the exposure, in degrees.
        scale_change: maximum log-scale change of an object over the exposure.
        curvature: maximum sideways bend of an object's path, relative to its length.
        camera_motion: maximum background pan over the exposure, as a fraction of the width.
        camera_rotation: maximum background rotation over the exposure, in degrees.
        shake: maximum camera-shake amplitude in pixels of a 256-pixel-wide image (scaled with the
            width, like every other motion here).
        gamma: display gamma; textures are converted to linear light with it.
    """
    h, w = size
    n = num_subframes
    tau = (np.arange(n) + 0.5) / n - 0.5  # exposure time in [-0.5, 0.5]
    centre = np.array([(w - 1) / 2, (h - 1) / 2])

    # background: pan + small rotation + shake, inverse map x -> P + C + R(phi) (x - C) + b(t)
    pan = (
        rng.uniform(0, camera_motion) * w * np.array([math.cos(a := rng.uniform(0, 2 * np.pi)), math.sin(a)])
    )
    amp = rng.uniform(0, shake * w / 256, 2)
    freq = rng.uniform(1.0, 3.0, 2)
    phase = rng.uniform(0, 2 * np.pi, 2)
    shift = pan[None] * tau[:, None] + amp * np.sin(2 * np.pi * freq * tau[:, None] + phase)
    phi = np.deg2rad(rng.uniform(-camera_rotation, camera_rotation)) * tau
    margin = int(math.ceil(np.abs(shift).max() + math.radians(camera_rotation) * math.hypot(h, w) / 2)) + 4
    bg_tex = decode_gamma(_texture(rng, h + 2 * margin, w + 2 * margin, shapes=6), gamma)
    rot = _rotation(phi)
    bg_m = np.empty((n, 2, 3))
    bg_m[:, :, :2] = rot
    bg_m[:, :, 2] = margin + centre + shift - np.einsum("nij,j->ni", rot, centre)
    background = Layer(np.concatenate([bg_tex, np.ones((*bg_tex.shape[:2], 1), np.float32)], axis=2), bg_m)

    objects = []
    for _ in range(int(rng.integers(num_objects[0], num_objects[1] + 1))):
        radius = rng.uniform(0.12, 0.3) * min(h, w)
        side = int(2 * radius) + 4
        alpha = _object_mask(rng, side)
        rgb = decode_gamma(_texture(rng, side, side), gamma) * alpha[:, :, None]
        tex = np.concatenate([rgb, alpha[:, :, None]], axis=2).astype(np.float32)
        length = rng.uniform(*motion) * w
        a = rng.uniform(0, 2 * np.pi)
        d = np.array([math.cos(a), math.sin(a)])
        normal = np.array([-d[1], d[0]])
        mid = rng.uniform(0.15, 0.85, 2) * np.array([w, h])
        bend = rng.uniform(-curvature, curvature) * length
        pos = mid + length * tau[:, None] * d + bend * (tau[:, None] ** 2 - 1 / 12) * normal
        theta = rng.uniform(0, 2 * np.pi) + np.deg2rad(rng.uniform(-rotation, rotation)) * tau
        scale = rng.uniform(0.8, 1.2) * np.exp(rng.uniform(-scale_change, scale_change) * tau)
        inv = _rotation(-theta) / scale[:, None, None]  # output offset -> texture offset
        m = np.empty((n, 2, 3))
        m[:, :, :2] = inv
        m[:, :, 2] = (side - 1) / 2 - np.einsum("nij,nj->ni", inv, pos)
        objects.append(Layer(tex, m))
    return Scene(h, w, background, objects)


def _boxes(matrices: np.ndarray, tex_h: int, tex_w: int, h: int, w: int) -> np.ndarray:
    """Per sub-frame output-pixel box ``(x0, y0, x1, y1)`` covered by a texture (inverse maps)."""
    n = matrices.shape[0]
    full = np.zeros((n, 3, 3))
    full[:, :2] = matrices
    full[:, 2, 2] = 1.0
    fwd = np.linalg.inv(full)[:, :2]  # texture -> output
    corners = np.array([[-1, -1, 1], [tex_w, -1, 1], [-1, tex_h, 1], [tex_w, tex_h, 1]], dtype=np.float64)
    pts = np.einsum("nij,kj->nki", fwd, corners)  # (N, 4, 2)
    lo = np.floor(pts.min(1)).astype(int) - 1
    hi = np.ceil(pts.max(1)).astype(int) + 2
    return np.stack(
        [np.maximum(lo[:, 0], 0), np.maximum(lo[:, 1], 0), np.minimum(hi[:, 0], w), np.minimum(hi[:, 1], h)],
        1,
    )


def render_subframes(scene: Scene) -> np.ndarray:
    """Render every sub-frame of a scene in linear light.

    Args:
        scene: from :func:`random_scene`.

    Returns:
        float32 linear RGB.

    Shape:
        ``(N, H, W, 3)``.
    """
    h, w = scene.height, scene.width
    out = np.empty((scene.num_subframes, h, w, 3), dtype=np.float32)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    bg = np.ascontiguousarray(scene.background.texture[:, :, :3])
    boxes = [_boxes(o.matrices, o.texture.shape[0], o.texture.shape[1], h, w) for o in scene.objects]
    for i in range(scene.num_subframes):
        cv2.warpAffine(
            bg,
            scene.background.matrices[i],
            (w, h),
            dst=out[i],
            flags=flags,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        for layer, box in zip(scene.objects, boxes):
            x0, y0, x1, y1 = (int(v) for v in box[i])
            if x0 >= x1 or y0 >= y1:
                continue
            m = layer.matrices[i].copy()
            m[:, 2] += m[:, 0] * x0 + m[:, 1] * y0  # warp straight into the box
            rgba = cv2.warpAffine(
                layer.texture, m, (x1 - x0, y1 - y0), flags=flags, borderMode=cv2.BORDER_CONSTANT
            )
            region = out[i, y0:y1, x0:x1]
            transparency = 1.0 - rgba[:, :, 3]
            for c in range(3):  # "over" with premultiplied alpha; per channel is 4x faster than broadcasting
                region[:, :, c] *= transparency
                region[:, :, c] += rgba[:, :, c]
    return out


@dataclass
class SynthSample:
    """A rendered sample.

    Attributes:
        blurry: gamma-encoded blurry image, float32 ``(H, W, 3)``.
        sharp: gamma-encoded sharp frames, float32 ``(T, H, W, 3)``.
        subframes: linear-light sub-frames, float32 ``(N, H, W, 3)``.
    """

    blurry: np.ndarray
    sharp: np.ndarray
    subframes: np.ndarray


def render_sample(scene: Scene, num_frames: int = 7, gamma: float | None = 2.2) -> SynthSample:
    """Render a scene into a blurry image and its sharp frames.

    ``blurry = encode(mean(subframes))``; ``sharp[j] = encode(subframes[j * m + m // 2])`` with
    ``m = N / num_frames``.

    Shape:
        see :class:`SynthSample`.
    """
    n = scene.num_subframes
    if n % num_frames:
        raise ValueError(f"{n} sub-frames cannot be split into {num_frames} equal segments")
    subframes = render_subframes(scene)
    blurry = encode_gamma(subframes.mean(axis=0, dtype=np.float64).astype(np.float32), gamma)
    sharp = encode_gamma(subframes[sharp_indices(num_frames, n // num_frames)], gamma)
    return SynthSample(blurry=blurry, sharp=sharp, subframes=subframes)


def synthesize_sample(
    seed: int | np.random.SeedSequence,
    size: tuple[int, int] = (256, 256),
    num_frames: int = 7,
    subframes: int = 5,
    gamma: float | None = 2.2,
    **scene_kwargs: object,
) -> SynthSample:
    """Draw and render one sample, deterministically for ``seed``.

    Args:
        seed: an int or ``SeedSequence``.
        size: ``(height, width)``.
        num_frames: ``T``.
        subframes: sub-frames per sharp frame (odd).
        gamma: display gamma (``None`` or 1 averages display values).
        **scene_kwargs: passed to :func:`random_scene`.
    """
    sharp_indices(num_frames, subframes)  # validates subframes
    rng = np.random.default_rng(seed)
    scene = random_scene(rng, size=size, num_subframes=num_frames * subframes, gamma=gamma, **scene_kwargs)  # type: ignore[arg-type]
    return render_sample(scene, num_frames=num_frames, gamma=gamma)


def _write_sample(
    out: Path,
    index: int,
    seed: np.random.SeedSequence,
    partition: str,
    bit_depth: int,
    sample_kwargs: dict[str, Any],
) -> SampleRecord:
    return save_sample(out, index, synthesize_sample(seed, **sample_kwargs), partition, bit_depth)


def save_sample(out: Path, index: int, sample: SynthSample, partition: str, bit_depth: int = 8) -> SampleRecord:
    """Write a rendered sample as ``<index>/blur.png`` and ``<index>/sharp/<j>.png`` under ``out``.

    Returns:
        Its metadata record (order ``ignore``).
    """
    sid = f"{index:05d}"
    blur_path = f"{sid}/blur.png"
    write_image(out / blur_path, sample.blurry, bit_depth=bit_depth, compression=1)
    frame_paths = []
    for j, frame in enumerate(sample.sharp, start=1):
        p = f"{sid}/sharp/{j:03d}.png"
        write_image(out / p, frame, bit_depth=bit_depth, compression=1)
        frame_paths.append(p)
    return SampleRecord(sid, blur_path, tuple(frame_paths), partition=partition, order="ignore")


def _write_sample_star(args: tuple) -> SampleRecord:
    return _write_sample(*args)


def synthesize_dataset(
    out_dir: str | Path,
    num_samples: int,
    num_frames: int = 7,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    subframes: int = 5,
    gamma: float | None = 2.2,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    num_objects: tuple[int, int] = (1, 3),
    motion: tuple[float, float] = (0.10, 0.25),
    camera_motion: float = 0.06,
    name: str = "synthetic",
    bit_depth: int = 8,
    workers: int = 1,
    show_progress: bool = True,
) -> Path:
    """Write a synthetic dataset in the on-disk format (PNGs + ``metadata.json``).

    Sample ``i`` depends only on ``(seed, i)``: the same seed gives the same files (whatever
    ``workers``), and a larger ``num_samples`` extends a dataset without changing its first samples
    (their partitions may move). Partitions are contiguous runs of ids: train, then val, then test.

    Args:
        out_dir: output folder (created).
        num_samples: number of samples.
        num_frames: ``T`` sharp frames per sample.
        size: ``(height, width)``.
        seed: dataset seed.
        subframes: sub-frames per sharp frame ``m`` (odd); the blurry image averages ``T * m``.
        gamma: display gamma for linear-light averaging.
        splits: fractions of train, val and test.
        num_objects: inclusive range of foreground objects per scene.
        motion: range of object travel over the exposure, as a fraction of the width.
        camera_motion: maximum background pan, as a fraction of the width.
        name: dataset name in the metadata.
        bit_depth: PNG bit depth (8 or 16).
        workers: processes rendering in parallel (1 = this process).
        show_progress: show a progress bar.

    Returns:
        Path of the written ``metadata.json``.
    """
    if num_frames < 3:
        raise ValueError(f"num_frames must be >= 3, got {num_frames}")
    sharp_indices(num_frames, subframes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = split_counts(num_samples, splits)
    partitions = [p for p, c in zip(PARTITIONS, counts) for _ in range(c)]
    children = np.random.SeedSequence(seed).spawn(num_samples)
    kwargs: dict[str, Any] = {
        "size": (int(size[0]), int(size[1])),
        "num_frames": num_frames,
        "subframes": subframes,
        "gamma": gamma,
        "num_objects": tuple(num_objects),
        "motion": tuple(motion),
        "camera_motion": camera_motion,
    }
    jobs = [(out, i, children[i], partitions[i], bit_depth, kwargs) for i in range(num_samples)]
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=mp.get_context(method)) as pool:
            results = pool.map(_write_sample_star, jobs, chunksize=4)
            records = list(progress(results, num_samples, "synthesising", show_progress))
    else:
        records = [_write_sample(*job) for job in progress(jobs, num_samples, "synthesising", show_progress)]
    meta = DatasetMetadata(
        name=name,
        frame_per_seq=num_frames,
        samples=records,
        extra={"generator": {"kind": "hypercut.synth", "seed": seed, "subframes": subframes, "gamma": gamma}},
    )
    return write_metadata(meta, out / "metadata.json")

"""Blur sequences composed from real photographs, rendered offline or on the fly.

A scene is a background photo under a smooth random camera trajectory (translation along a curved
path, a small rotation and zoom, hand shake) and 0-N foreground layers cut from other photos with
soft masks, each on its own curved path, occluding the background and one another. The photos come
from packages on the machine: scikit-image's bundled images (always there) and, when installed,
the stills of Debian's ``opencv-doc`` examples. Nothing is downloaded.

Photos are split into train/val/test *by source photograph* (near-duplicate pairs such as stereo
views share a group), so no test photo is ever seen in training.

Rendering reuses the procedural generator's renderer (:func:`hypercut.data.synth.render_sample`):
sub-frames in linear light, the blurry image their mean, sharp frame ``j`` the middle sub-frame of
segment ``j``. Sensor noise (and optionally JPEG) is applied to the blurry image only. Motion is
given in pixels per exposure, not as a fraction of the image, so a model trained on small crops
sees the blur it will meet on large images.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from hypercut.data._progress import progress
from hypercut.data.datasets import to_item
from hypercut.data.io import list_images, read_image
from hypercut.data.metadata import DatasetMetadata, write_metadata
from hypercut.data.synth import (
    Layer,
    Scene,
    SynthSample,
    _object_mask,
    _rotation,
    decode_gamma,
    render_sample,
    save_sample,
)

__all__ = [
    "OPENCV_DOC_DIR",
    "MotionRecipe",
    "camera_motion",
    "NaturalSceneSet",
    "NaturalSceneStream",
    "PhotoLibrary",
    "natural_sample",
    "natural_scene",
    "write_natural_dataset",
]

OPENCV_DOC_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
"""Where Debian's ``opencv-doc`` package puts its example images."""

# scikit-image's bundled photographs and textures. Left out: synthetic charts (chessboard, phantom,
# logo), a binary silhouette (horse) and an image that is already motion-blurred (clock_motion).
_SKIMAGE_FILES = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png", "coins.png",
    "color.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "microaneurysms.png",
    "moon.png", "motorcycle_left.png", "motorcycle_right.png", "page.png", "retina.jpg", "rocket.jpg",
    "text.png",
)  # fmt: skip
# opencv-doc stills that are photographs or rich renderings. Left out: calibration chessboards,
# contour test shapes, logos, templates, and the already blurred samples (licenseplate_motion,
# text_motion, text_defocus).
_OPENCV_FILES = (
    "HappyFish.jpg", "aero1.jpg", "aero3.jpg", "aloeL.jpg", "aloeR.jpg", "apple.jpg", "baboon.jpg",
    "basketball1.png", "basketball2.png", "Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg", "board.jpg",
    "box_in_scene.png", "building.jpg", "butterfly.jpg", "cards.png", "chicky_512.png", "fruits.jpg",
    "graf1.png", "graf3.png", "home.jpg", "lena.jpg", "leuvenA.jpg", "leuvenB.jpg", "messi5.jpg",
    "orange.jpg", "rubberwhale1.png", "rubberwhale2.png", "smarties.png", "squirrel_cls.jpg",
    "starry_night.jpg", "stuff.jpg", "sudoku.png",
)  # fmt: skip
PARTITION_FRACTIONS = {"test": 0.2, "val": 0.1}


def photo_group(name: str) -> str:
    """The group a photo belongs to: views of one scene (``aloeL``/``aloeR``, ``graf1``/``graf3``,
    ``motorcycle_left``/``_right``) share a group and therefore a partition.

    Example:
        >>> photo_group("aloeL"), photo_group("graf3"), photo_group("motorcycle_right")
        ('aloe', 'graf', 'motorcycle')
    """
    stem = name.lower()
    stem = re.sub(r"_(left|right)$", "", stem)
    stem = re.sub(r"\d+$", "", stem)
    return re.sub(r"(?<=[a-z]{3})[lrab]$", "", stem)


def partition_groups(groups: Sequence[str], fractions: dict[str, float] | None = None) -> dict[str, str]:
    """Assign each group to ``test``, ``val`` or ``train`` by a stable hash of its name.

    Groups are ordered by the MD5 of their name; the first ``ceil(test * n)`` go to test, the next
    ``ceil(val * n)`` to val, the rest to train. Adding groups from another source moves no group of
    an existing source when each source is partitioned on its own (as :class:`PhotoLibrary` does).
    """
    fractions = PARTITION_FRACTIONS if fractions is None else fractions
    ordered = sorted(set(groups), key=lambda g: hashlib.md5(g.encode()).hexdigest())
    n = len(ordered)
    n_test = math.ceil(fractions.get("test", 0.0) * n) if n >= 3 else 0
    n_val = math.ceil(fractions.get("val", 0.0) * n) if n >= 3 else 0
    out = {}
    for i, group in enumerate(ordered):
        out[group] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


@dataclass
class PhotoLibrary:
    """Named photographs (float32 display RGB in [0, 1], ``(H, W, 3)``) with their partitions.

    Attributes:
        photos: name -> image.
        partitions: name -> ``train``/``val``/``test``.
    """

    photos: dict[str, np.ndarray]
    partitions: dict[str, str]

    @classmethod
    def from_sources(
        cls,
        sources: Sequence[str] = ("skimage", "opencv-doc"),
        folders: Sequence[str | Path] = (),
        min_side: int = 128,
    ) -> PhotoLibrary:
        """Load the photos of ``sources`` (``skimage``, ``opencv-doc``) and of extra ``folders``.

        ``opencv-doc`` is skipped when the package is not installed; each source (and each folder) is
        partitioned on its own, so installing ``opencv-doc`` does not move a scikit-image photo.

        Raises:
            ValueError: an unknown source, or no photo found at all.
        """
        groups: list[list[tuple[str, Path]]] = []
        for source in sources:
            if source == "skimage":
                try:
                    import skimage.data
                except ImportError as err:
                    raise ImportError(
                        "photo source 'skimage' needs scikit-image: pip install 'hypercut[natural]'"
                    ) from err

                root = Path(skimage.data.__file__).parent
                groups.append([(f"skimage/{Path(f).stem}", root / f) for f in _SKIMAGE_FILES if (root / f).is_file()])
            elif source == "opencv-doc":
                found = [(f"opencv/{Path(f).stem}", OPENCV_DOC_DIR / f) for f in _OPENCV_FILES]
                groups.append([(n, p) for n, p in found if p.is_file()])
            else:
                raise ValueError(f"unknown photo source {source!r}: expected 'skimage' or 'opencv-doc'")
        for folder in folders:
            groups.append([(f"{Path(folder).name}/{p.stem}", p) for p in list_images(folder)])
        photos: dict[str, np.ndarray] = {}
        partitions: dict[str, str] = {}
        for entries in groups:
            loaded = {}
            for name, path in entries:
                image = read_image(path)
                if min(image.shape[:2]) >= min_side:
                    loaded[name] = np.ascontiguousarray(image, dtype=np.float32)
            assignment = partition_groups([photo_group(n.split("/", 1)[1]) for n in loaded])
            for name, image in loaded.items():
                photos[name] = image
                partitions[name] = assignment[photo_group(name.split("/", 1)[1])]
        if not photos:
            raise ValueError(f"no photographs found in sources {list(sources)} and folders {list(folders)}")
        return cls(photos, partitions)

    def names(self, partition: str) -> list[str]:
        """Sorted names of the photos of ``partition``."""
        return sorted(n for n, p in self.partitions.items() if p == partition)

    def images(self, partition: str) -> list[np.ndarray]:
        """The photos of ``partition``, in :meth:`names` order."""
        return [self.photos[n] for n in self.names(partition)]


@dataclass(frozen=True)
class MotionRecipe:
    """How much things move during one exposure, in pixels (independent of the image size).

    Attributes:
        camera: range of the camera's path length (background translation).
        camera_curvature: sideways bend of the camera path, relative to its length.
        camera_heading_spread: the camera path's heading lies within this many degrees of the
            horizontal, in either direction; 90 allows every heading (uniform).
        camera_rotation: maximum background rotation over the exposure, degrees.
        camera_zoom: maximum log-scale change of the background over the exposure.
        shake: maximum hand-shake amplitude (a few cycles per exposure).
        objects: inclusive range of the number of foreground layers.
        object_motion: range of a layer's path length.
        object_size: range of a layer's diameter as a fraction of the shorter image side.
        object_rotation: maximum layer rotation over the exposure, degrees.
        noise: range of the std of Gaussian sensor noise on the blurry image (display values).
        jpeg_probability: chance that the blurry image is JPEG-compressed (quality 60-95).
        order: how the sharp frames are stored: ``"camera"`` puts them in the order in which the
            background moves rightwards (downwards for a vertical pan), a convention a network can
            read off the blurry image; ``"random"`` keeps the drawn direction, which is uniform, so
            a sequence and its reverse are equally likely.
    """

    camera: tuple[float, float] = (1.0, 14.0)
    camera_curvature: float = 0.3
    camera_heading_spread: float = 90.0
    camera_rotation: float = 1.0
    camera_zoom: float = 0.03
    shake: float = 1.0
    objects: tuple[int, int] = (0, 2)
    object_motion: tuple[float, float] = (0.0, 16.0)
    object_size: tuple[float, float] = (0.25, 0.6)
    object_rotation: float = 10.0
    noise: tuple[float, float] = (0.0, 0.01)
    jpeg_probability: float = 0.0
    order: str = "camera"

    def __post_init__(self) -> None:
        if not 0.0 <= self.camera_heading_spread <= 90.0:
            raise ValueError(
                f"motion.camera_heading_spread must be in [0, 90] degrees, got {self.camera_heading_spread}"
            )


def _photo_crop(rng: np.random.Generator, photo: np.ndarray, h: int, w: int) -> np.ndarray:
    """A random ``(h, w, 3)`` crop of ``photo`` at a random scale in [0.4, 1], flipped or rotated."""
    if rng.random() < 0.5:
        photo = photo.transpose(1, 0, 2)
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.4, 1.0)
    scale = max(scale, h / ph, w / pw)  # upsample only when the photo is too small
    src_h, src_w = min(ph, int(math.ceil(h / scale))), min(pw, int(math.ceil(w / scale)))
    y0 = int(rng.integers(0, ph - src_h + 1))
    x0 = int(rng.integers(0, pw - src_w + 1))
    crop = photo[y0 : y0 + src_h, x0 : x0 + src_w]
    interp = cv2.INTER_AREA if src_h > h else cv2.INTER_CUBIC
    crop = cv2.resize(crop, (w, h), interpolation=interp)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1]
    gains = rng.uniform(0.85, 1.15) * rng.uniform(0.92, 1.08, 3)
    return np.clip(crop * gains.astype(np.float32), 0.0, 1.0).astype(np.float32)


def _curved_path(
    rng: np.random.Generator, tau: np.ndarray, length: float, curvature: float, spread: float = 90.0
) -> np.ndarray:
    """Positions ``(N, 2)`` along a path of ``length`` pixels through 0 at ``tau = 0``, gently bent.

    Its heading is uniform within ``spread`` degrees of the horizontal, either way (90: any heading).
    """
    a = rng.uniform(0, 2 * np.pi)
    if spread < 90.0:  # the same draw, folded onto the two sectors around 0 and pi
        a = np.pi * (a >= np.pi) + ((a % np.pi) / np.pi * 2 - 1) * np.deg2rad(spread)
    d = np.array([math.cos(a), math.sin(a)])
    normal = np.array([-d[1], d[0]])
    bend = rng.uniform(-curvature, curvature) * length
    return length * tau[:, None] * d + bend * (tau[:, None] ** 2 - 1 / 12) * normal


def natural_scene(
    rng: np.random.Generator,
    photos: Sequence[np.ndarray],
    size: tuple[int, int] = (128, 128),
    num_subframes: int = 35,
    motion: MotionRecipe | None = None,
    gamma: float | None = 2.2,
) -> Scene:
    """Draw a scene: a background photo under camera motion and foreground layers from other photos.

    Args:
        rng: source of randomness.
        photos: the photographs to draw from (display RGB in [0, 1]).
        size: ``(height, width)`` of the rendered images.
        num_subframes: sub-frames ``N`` over the exposure.
        motion: the motion recipe (defaults of :class:`MotionRecipe`).
        gamma: display gamma; photos are converted to linear light with it.
    """
    if not photos:
        raise ValueError("natural_scene needs at least one photo")
    m = MotionRecipe() if motion is None else motion
    h, w = size
    n = num_subframes
    tau = (np.arange(n) + 0.5) / n - 0.5
    centre = np.array([(w - 1) / 2, (h - 1) / 2])

    shift = _curved_path(rng, tau, rng.uniform(*m.camera), m.camera_curvature, m.camera_heading_spread)
    amp = rng.uniform(0, m.shake, 2)
    freq = rng.uniform(1.0, 3.0, 2)
    phase = rng.uniform(0, 2 * np.pi, 2)
    shift = shift + amp * (np.sin(2 * np.pi * freq * tau[:, None] + phase) - np.sin(phase))
    phi = np.deg2rad(rng.uniform(-m.camera_rotation, m.camera_rotation)) * tau
    zoom = np.exp(rng.uniform(-m.camera_zoom, m.camera_zoom) * tau)
    radius = math.hypot(h, w) / 2
    reach = np.abs(shift).max() + radius * (abs(phi).max() + abs(zoom - 1).max())
    margin = int(math.ceil(reach)) + 4
    bg_photo = int(rng.integers(len(photos)))
    bg = decode_gamma(_photo_crop(rng, photos[bg_photo], h + 2 * margin, w + 2 * margin), gamma)
    rot = _rotation(phi) * zoom[:, None, None]
    bg_m = np.empty((n, 2, 3))
    bg_m[:, :, :2] = rot
    bg_m[:, :, 2] = margin + centre + shift - np.einsum("nij,j->ni", rot, centre)
    background = Layer(np.concatenate([bg, np.ones((*bg.shape[:2], 1), np.float32)], axis=2), bg_m)

    objects = []
    for _ in range(int(rng.integers(m.objects[0], m.objects[1] + 1))):
        side = max(8, int(rng.uniform(*m.object_size) * min(h, w)))
        alpha = _object_mask(rng, side)
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=rng.uniform(0.3, 1.2))
        others = [i for i in range(len(photos)) if i != bg_photo] or [bg_photo]
        src = photos[others[int(rng.integers(len(others)))]]
        rgb = decode_gamma(_photo_crop(rng, src, side, side), gamma) * alpha[:, :, None]
        tex = np.concatenate([rgb, alpha[:, :, None]], axis=2).astype(np.float32)
        pos = rng.uniform(0.1, 0.9, 2) * np.array([w, h]) + _curved_path(
            rng, tau, rng.uniform(*m.object_motion), 0.5
        )
        theta = rng.uniform(-0.3, 0.3) + np.deg2rad(rng.uniform(-m.object_rotation, m.object_rotation)) * tau
        inv = _rotation(-theta) / rng.uniform(0.8, 1.2)
        mat = np.empty((n, 2, 3))
        mat[:, :, :2] = inv
        mat[:, :, 2] = (side - 1) / 2 - np.einsum("nij,nj->ni", inv, pos)
        objects.append(Layer(tex, mat))
    return Scene(h, w, background, objects)


def _degrade(rng: np.random.Generator, blurry: np.ndarray, motion: MotionRecipe) -> np.ndarray:
    """Sensor noise and optional JPEG on a display-space blurry image."""
    sigma = rng.uniform(*motion.noise)
    out = blurry + sigma * rng.standard_normal(blurry.shape).astype(np.float32) if sigma > 0 else blurry
    out = np.clip(out, 0.0, 1.0)
    if motion.jpeg_probability > 0 and rng.random() < motion.jpeg_probability:
        quality = int(rng.integers(60, 96))
        bgr = (out[:, :, ::-1] * 255 + 0.5).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            out = decoded[:, :, ::-1].astype(np.float32) / 255.0
    return np.ascontiguousarray(out, dtype=np.float32)


def natural_sample(
    seed: int | Sequence[int] | np.random.SeedSequence,
    photos: Sequence[np.ndarray],
    size: tuple[int, int] = (128, 128),
    num_frames: int = 7,
    subframes: int = 5,
    motion: MotionRecipe | None = None,
    gamma: float | None = 2.2,
) -> SynthSample:
    """Draw and render one natural-image sample, deterministically for ``seed``.

    Returns:
        A :class:`~hypercut.data.synth.SynthSample`; its ``blurry`` carries the sensor noise.
    """
    motion = MotionRecipe() if motion is None else motion
    rng = np.random.default_rng(seed)
    if motion.order not in ("camera", "random"):
        raise ValueError(f"MotionRecipe.order: expected 'camera' or 'random', got {motion.order!r}")
    scene = natural_scene(rng, photos, size, num_frames * subframes, motion, gamma)
    sample = render_sample(scene, num_frames=num_frames, gamma=gamma)
    sample.blurry = _degrade(rng, sample.blurry, motion)
    dx, dy = camera_motion(scene)
    if motion.order == "camera" and (dx < 0 or (dx == 0 and dy < 0)):
        sample.sharp = np.ascontiguousarray(sample.sharp[::-1])
        sample.subframes = np.ascontiguousarray(sample.subframes[::-1])
    return sample


def camera_motion(scene: Scene) -> tuple[float, float]:
    """How far the background moves in the image over the exposure, at the image centre, in pixels.

    The background's matrices map output pixels to texture coordinates, so content seen at the
    image centre comes from texture point ``M_i @ centre``; the content moves the opposite way.
    """
    centre = np.array([(scene.width - 1) / 2, (scene.height - 1) / 2, 1.0])
    m = scene.background.matrices
    source = m[[0, -1]] @ centre  # (2, 2): texture point under the centre, first and last sub-frame
    dx, dy = source[0] - source[1]
    return float(dx), float(dy)


class NaturalSceneStream(IterableDataset):
    """An endless stream of freshly rendered training items (see :func:`natural_sample`).

    Every DataLoader worker (and every DDP rank, via ``rank``) draws its own stream from
    ``(seed, rank, worker)``, so no two workers repeat each other and a run is reproducible.

    Args:
        photos: training photographs.
        size: ``(height, width)`` of every item.
        num_frames: ``T``.
        subframes: sub-frames per sharp frame.
        motion: the motion recipe.
        seed: stream seed.
        rank: the process's rank (distinct streams per rank).

    Items are contract dicts: ``blurry (3, H, W)``, ``sharp (T, 3, H, W)``, ``id``.
    """

    def __init__(
        self,
        photos: Sequence[np.ndarray],
        size: tuple[int, int] = (96, 96),
        num_frames: int = 7,
        subframes: int = 5,
        motion: MotionRecipe | None = None,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        super().__init__()
        if not photos:
            raise ValueError("NaturalSceneStream needs at least one photo")
        self.photos = list(photos)
        self.size = (int(size[0]), int(size[1]))
        self.num_frames = num_frames
        self.subframes = subframes
        self.motion = MotionRecipe() if motion is None else motion
        self.seed = seed
        self.rank = rank

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        stream = np.random.SeedSequence([self.seed, self.rank, worker])
        index = 0
        while True:
            child = np.random.SeedSequence(entropy=stream.entropy, spawn_key=(self.rank, worker, index))
            sample = natural_sample(child, self.photos, self.size, self.num_frames, self.subframes, self.motion)
            yield to_item(sample.blurry, sample.sharp, f"stream/{self.rank}/{worker}/{index}", None)
            index += 1


class NaturalSceneSet(Dataset):
    """A fixed, deterministic set of ``num_samples`` items (sample ``i`` depends on ``(seed, i)``).

    Used for validation and testing on held-out photos; items are rendered once, on first use.

    Args:
        photos: the photographs (e.g. the test partition of a :class:`PhotoLibrary`).
        num_samples: number of items.
        size: ``(height, width)``.
        num_frames: ``T``.
        subframes: sub-frames per sharp frame.
        motion: the motion recipe.
        seed: set seed.
        prefix: id prefix.
    """

    def __init__(
        self,
        photos: Sequence[np.ndarray],
        num_samples: int,
        size: tuple[int, int] = (128, 128),
        num_frames: int = 7,
        subframes: int = 5,
        motion: MotionRecipe | None = None,
        seed: int = 0,
        prefix: str = "natural",
    ) -> None:
        if not photos:
            raise ValueError("NaturalSceneSet needs at least one photo")
        self.photos = list(photos)
        self.num_samples = int(num_samples)
        self.size = (int(size[0]), int(size[1]))
        self.num_frames = num_frames
        self.subframes = subframes
        self.motion = MotionRecipe() if motion is None else motion
        self.seed = seed
        self.prefix = prefix
        self._items: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        if index not in self._items:
            sample = natural_sample(
                [self.seed, index], self.photos, self.size, self.num_frames, self.subframes, self.motion
            )
            self._items[index] = to_item(sample.blurry, sample.sharp, f"{self.prefix}/{index:05d}", None)
        return self._items[index]


def write_natural_dataset(
    out_dir: str | Path,
    num_samples: int,
    num_frames: int = 7,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    subframes: int = 5,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    motion: MotionRecipe | None = None,
    library: PhotoLibrary | None = None,
    name: str = "natural",
    show_progress: bool = True,
) -> Path:
    """Write natural-image samples in the on-disk format (PNGs + ``metadata.json``).

    Each partition's samples are drawn only from that partition's photos, so the test split shares
    no photograph with train. Sample ``i`` depends only on ``(seed, i)`` and its partition.

    Returns:
        Path of the written ``metadata.json``.
    """
    from hypercut.data.synth import split_counts

    library = PhotoLibrary.from_sources() if library is None else library
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = split_counts(num_samples, splits)
    partitions = [p for p, c in zip(("train", "val", "test"), counts) for _ in range(c)]
    pools = {p: library.images(p) or library.images("train") for p in set(partitions)}
    records = []
    for i in progress(range(num_samples), num_samples, "rendering", show_progress):
        part = partitions[i]
        sample = natural_sample([seed, i], pools[part], size, num_frames, subframes, motion)
        records.append(save_sample(out, i, sample, part))
    meta = DatasetMetadata(
        name=name,
        frame_per_seq=num_frames,
        samples=records,
        extra={
            "generator": {
                "kind": "hypercut.natural",
                "seed": seed,
                "subframes": subframes,
                "test_photos": library.names("test"),
            }
        },
    )
    return write_metadata(meta, out / "metadata.json")


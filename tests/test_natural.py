"""The natural-image generator: determinism, splits by photograph, stream seeding, on-disk writing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hypercut.data import check_dataset, read_metadata
from hypercut.data.natural import (
    OPENCV_DOC_DIR,
    MotionRecipe,
    NaturalSceneSet,
    NaturalSceneStream,
    PhotoLibrary,
    natural_sample,
    partition_groups,
    photo_group,
    write_natural_dataset,
)

pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def library() -> PhotoLibrary:
    return PhotoLibrary.from_sources(("skimage",))


def test_sample_is_deterministic_per_seed(library: PhotoLibrary) -> None:
    photos = library.images("train")
    a = natural_sample([3, 1], photos, (48, 40))
    b = natural_sample([3, 1], photos, (48, 40))
    c = natural_sample([3, 2], photos, (48, 40))
    assert a.blurry.shape == (48, 40, 3) and a.sharp.shape == (7, 48, 40, 3)
    assert np.array_equal(a.blurry, b.blurry) and np.array_equal(a.sharp, b.sharp)
    assert not np.array_equal(a.sharp, c.sharp)
    assert 0.0 <= a.blurry.min() and a.blurry.max() <= 1.0


def test_blurry_is_the_linear_light_mean_without_noise(library: PhotoLibrary) -> None:
    still = MotionRecipe(camera=(0.0, 0.0), camera_rotation=0.0, camera_zoom=0.0, shake=0.0,
                         objects=(0, 0), noise=(0.0, 0.0))
    sample = natural_sample(0, library.images("train"), (32, 32), motion=still)
    # nothing moves: every frame equals the blurry image
    assert np.abs(sample.sharp - sample.blurry[None]).max() < 1e-5
    moving = natural_sample(0, library.images("train"), (32, 32), motion=MotionRecipe(camera=(10.0, 10.0)))
    assert np.abs(moving.sharp[0] - moving.sharp[-1]).mean() > 0.01


def test_no_test_photo_in_train(library: PhotoLibrary) -> None:
    train, val, test = (set(library.names(p)) for p in ("train", "val", "test"))
    assert train and test
    assert not train & test and not train & val and not val & test
    train_groups = {photo_group(n.split("/", 1)[1]) for n in train}
    assert not train_groups & {photo_group(n.split("/", 1)[1]) for n in test}


def test_views_of_one_scene_share_a_partition() -> None:
    groups = [photo_group(n) for n in ("aloeL", "aloeR", "graf1", "graf3", "motorcycle_left", "motorcycle_right")]
    assert groups == ["aloe", "aloe", "graf", "graf", "motorcycle", "motorcycle"]
    assignment = partition_groups([f"g{i}" for i in range(20)])
    assert sum(v == "test" for v in assignment.values()) == 4
    assert sum(v == "val" for v in assignment.values()) == 2
    assert partition_groups([f"g{i}" for i in range(20)]) == assignment  # stable


@pytest.mark.skipif(not OPENCV_DOC_DIR.is_dir(), reason="Debian's opencv-doc is not installed")
def test_installing_opencv_doc_moves_no_skimage_photo(library: PhotoLibrary) -> None:
    both = PhotoLibrary.from_sources(("skimage", "opencv-doc"))
    assert len(both.photos) > len(library.photos)
    for name, partition in library.partitions.items():
        assert both.partitions[name] == partition


def test_stream_workers_and_ranks_draw_different_items(library: PhotoLibrary) -> None:
    photos = library.images("train")
    first = next(iter(NaturalSceneStream(photos, (24, 24), seed=0, rank=0)))
    again = next(iter(NaturalSceneStream(photos, (24, 24), seed=0, rank=0)))
    other_rank = next(iter(NaturalSceneStream(photos, (24, 24), seed=0, rank=1)))
    assert first["blurry"].shape == (3, 24, 24) and first["sharp"].shape == (7, 3, 24, 24)
    assert torch.equal(first["sharp"], again["sharp"])
    assert not torch.equal(first["sharp"], other_rank["sharp"])
    loader = torch.utils.data.DataLoader(NaturalSceneStream(photos, (24, 24)), batch_size=1, num_workers=2)
    batches = iter(loader)
    a, b = next(batches), next(batches)  # one from each worker
    assert a["id"] != b["id"] and not torch.equal(a["sharp"], b["sharp"])


def test_scene_set_is_fixed(library: PhotoLibrary) -> None:
    ds = NaturalSceneSet(library.images("test"), 3, (20, 28), num_frames=5, seed=7)
    assert len(ds) == 3 and ds[2]["sharp"].shape == (5, 3, 20, 28)
    again = NaturalSceneSet(library.images("test"), 3, (20, 28), num_frames=5, seed=7)
    assert torch.equal(ds[1]["blurry"], again[1]["blurry"])
    with pytest.raises(IndexError):
        ds[3]


def test_write_natural_dataset_uses_partition_photos(tmp_path, library: PhotoLibrary) -> None:
    meta_path = write_natural_dataset(tmp_path / "nat", 10, size=(24, 32), library=library, show_progress=False)
    meta = read_metadata(meta_path)
    assert [s.partition for s in meta.samples].count("test") == 1
    assert meta.extra["generator"]["test_photos"] == library.names("test")
    check_dataset(tmp_path / "nat")


def test_datamodule_batches(library: PhotoLibrary) -> None:
    from hypercut.data import NaturalDataModule

    dm = NaturalDataModule(sources=("skimage",), crop_size=32, eval_size=40, batch_size=2, eval_batch_size=2,
                           num_val=3, num_test=2, motion={"camera": [2, 4]})
    batch = next(iter(dm.train_dataloader()))
    assert batch["sharp"].shape == (2, 7, 3, 32, 32)
    val = list(dm.val_dataloader())
    assert sum(b["blurry"].shape[0] for b in val) == 3 and val[0]["blurry"].shape[-1] == 40
    assert dm.has_split("test") and not dm.has_split("predict")


def test_camera_order_puts_the_background_moving_right(library: PhotoLibrary) -> None:
    from hypercut.data.natural import camera_motion, natural_scene

    for seed in range(6):
        rng = np.random.default_rng(seed)
        still_objects = MotionRecipe(camera=(8.0, 8.0), objects=(0, 0))
        scene = natural_scene(rng, library.images("train"), (40, 40), 21, still_objects)  # natural_sample's scene
        dx, dy = camera_motion(scene)
        assert abs(np.hypot(dx, dy) - 8.0) < 3.0  # path length plus bend and shake
        random = natural_sample(seed, library.images("train"), (40, 40), subframes=3,
                                motion=MotionRecipe(camera=(8.0, 8.0), order="random", objects=(0, 0)))
        canonical = natural_sample(seed, library.images("train"), (40, 40), subframes=3,
                                   motion=MotionRecipe(camera=(8.0, 8.0), order="camera", objects=(0, 0)))
        assert np.array_equal(canonical.blurry, random.blurry)
        expected = random.sharp[::-1] if dx < 0 else random.sharp
        assert np.array_equal(canonical.sharp, expected)
        # the first frame's content sits left of the last frame's: shifting it right matches better
        first, last = canonical.sharp[0].mean(2), canonical.sharp[-1].mean(2)
        right = np.abs(first[:, :-4] - last[:, 4:]).mean()
        left = np.abs(first[:, 4:] - last[:, :-4]).mean()
        if abs(dx) > 3:
            assert right < left, (seed, dx, dy)


def test_heading_spread_keeps_pans_near_the_horizontal(library: PhotoLibrary) -> None:
    from hypercut.data.natural import camera_motion, natural_scene

    def heading(seed: int, spread: float) -> float:
        recipe = MotionRecipe(camera=(8.0, 8.0), camera_heading_spread=spread, shake=0.0, objects=(0, 0))
        scene = natural_scene(np.random.default_rng(seed), library.images("train"), (40, 40), 21, recipe)
        dx, dy = camera_motion(scene)
        return float(np.degrees(np.arctan2(abs(dy), abs(dx))))  # 0: horizontal, 90: vertical

    uniform = [heading(seed, 90.0) for seed in range(40)]
    narrow = [heading(seed, 20.0) for seed in range(40)]
    assert max(uniform) > 45.0  # the default draws steep pans too
    assert max(narrow) < 20.0 + 10.0  # the curvature bends the path by a few degrees at most
    # both directions of a horizontal pan stay equally possible (a sequence and its reverse)
    signs = set()
    for seed in range(40):
        recipe = MotionRecipe(camera=(8.0, 8.0), camera_heading_spread=20.0, shake=0.0, objects=(0, 0))
        scene = natural_scene(np.random.default_rng(seed), library.images("train"), (40, 40), 21, recipe)
        signs.add(bool(camera_motion(scene)[0] > 0))
    assert signs == {True, False}


def test_heading_spread_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="camera_heading_spread"):
        MotionRecipe(camera_heading_spread=120.0)

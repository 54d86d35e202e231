"""Data generation: procedural synthetic scenes and datasets built from video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hypercut.cli import data_main
from hypercut.data import (
    BlurSequenceDataset,
    dataset_from_video,
    read_image,
    read_image_raw,
    read_metadata,
    validate_dataset,
    write_image,
)
from hypercut.data.synth import (
    decode_gamma,
    encode_gamma,
    random_scene,
    render_sample,
    render_subframes,
    sharp_indices,
    split_counts,
    synthesize_sample,
)
from hypercut.data.video import plan_windows, window_sharp_indices


# ----------------------------------------------------------------------------------------- synthesis
def test_blurry_is_the_linear_mean_of_the_subframes() -> None:
    scene = random_scene(np.random.default_rng(1), size=(40, 48), num_subframes=15, gamma=2.2)
    subframes = render_subframes(scene)
    assert subframes.shape == (15, 40, 48, 3) and subframes.dtype == np.float32
    sample = render_sample(scene, num_frames=5, gamma=2.2)
    np.testing.assert_allclose(decode_gamma(sample.blurry, 2.2), subframes.mean(0), atol=1e-5)
    assert sharp_indices(5, 3) == [1, 4, 7, 10, 13]
    np.testing.assert_allclose(decode_gamma(sample.sharp, 2.2), subframes[[1, 4, 7, 10, 13]], atol=1e-5)
    # averaging in linear light is not averaging display values
    display_mean = encode_gamma(subframes, 2.2).mean(0)
    assert float(np.abs(display_mean - sample.blurry).max()) > 1e-3
    linear = render_sample(scene, num_frames=5, gamma=None)
    np.testing.assert_allclose(linear.blurry, subframes.mean(0), atol=1e-6)


def test_synthetic_motion_is_visible_and_textured() -> None:
    sample = synthesize_sample(3, size=(64, 64), num_frames=7, subframes=3)
    assert sample.blurry.shape == (64, 64, 3) and sample.sharp.shape == (7, 64, 64, 3)
    assert float(np.abs(sample.sharp[0] - sample.sharp[-1]).mean()) > 0.01  # things move
    grad = lambda x: float(np.abs(np.diff(x, axis=-2)).mean())  # noqa: E731
    assert grad(sample.blurry) < 0.9 * grad(sample.sharp[3])  # the blurry image is blurrier
    assert float(sample.sharp[3].std(axis=(0, 1)).mean()) > 0.02  # not a flat image
    with pytest.raises(ValueError, match="odd"):
        synthesize_sample(0, size=(16, 16), subframes=2)


def test_synthesis_is_deterministic(tmp_path: Path) -> None:
    a = synthesize_sample(7, size=(24, 32), subframes=3)
    b = synthesize_sample(7, size=(24, 32), subframes=3)
    c = synthesize_sample(8, size=(24, 32), subframes=3)
    np.testing.assert_array_equal(a.blurry, b.blurry)
    np.testing.assert_array_equal(a.sharp, b.sharp)
    assert not np.array_equal(a.blurry, c.blurry)
    for name in ("one", "two"):
        argv = [
            "synth",
            str(tmp_path / name),
            "--num-samples",
            "5",
            "--size",
            "24",
            "32",
            "--num-frames",
            "3",
        ]
        assert (
            data_main([*argv, "--subframes", "3", "--seed", "4", "--splits", "0.6,0.2,0.2", "--quiet"]) == 0
        )
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert len(files) == 5 * 4
    for f in files:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes()
    meta = read_metadata(tmp_path / "one" / "metadata.json")
    assert [s.partition for s in meta.samples] == ["train"] * 3 + ["val", "test"]
    assert validate_dataset(tmp_path / "one", check="full") == []
    item = BlurSequenceDataset(tmp_path / "one", split="val")[0]
    assert item["sharp"].shape == (3, 3, 24, 32)


def test_split_counts() -> None:
    assert split_counts(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert split_counts(3, (0.8, 0.1, 0.1)) == [1, 1, 1]
    assert split_counts(4, (1, 0, 0)) == [4, 0, 0]
    assert sum(split_counts(201, (0.7, 0.2, 0.1))) == 201


# ----------------------------------------------------------------------------------------- video
def _moving_frames(n: int = 64, h: int = 48, w: int = 64) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(n):
        img = np.stack([(xx * 4 + t * 3) % 256, (yy * 5) % 256, np.full_like(xx, (t * 4) % 256)], -1)
        img[10:20, (2 * t) % (w - 10) : (2 * t) % (w - 10) + 10] = 255
        frames.append(img.astype(np.uint8))
    return frames


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=30)  # lossless, so the test can compare pixels
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "bgr0"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_dataset_from_video_has_contiguous_partitions(tmp_path: Path) -> None:
    frames = _moving_frames()
    video = tmp_path / "clip.mkv"
    _write_video(video, frames)
    meta_path = dataset_from_video(
        video, tmp_path / "out", num_frames=3, window=5, gamma=None, show_progress=False
    )
    meta = read_metadata(meta_path)
    assert validate_dataset(tmp_path / "out") == []
    raw = json.loads(meta_path.read_text())
    spans = {
        p: [tuple(e["source_frames"]) for e in raw["data"] if e["partition"] == p]
        for p in ("train", "val", "test")
    }
    n_train, n_val, _ = split_counts(64, (0.8, 0.1, 0.1))  # frames [0, 52), [52, 58), [58, 64)
    assert spans["train"] == [(s, s + 5) for s in range(0, 47, 5)]
    assert spans["val"] == [(52, 57)] and spans["test"] == [(58, 63)]
    assert max(e for _, e in spans["train"]) <= n_train <= min(s for s, _ in spans["val"])
    assert max(e for _, e in spans["val"]) <= n_train + n_val <= min(s for s, _ in spans["test"])
    assert window_sharp_indices(3, 5) == [0, 2, 4] and window_sharp_indices(7, 21) == [
        1,
        4,
        7,
        10,
        13,
        16,
        19,
    ]
    # sample 1 = frames 5..9: blurry is their mean, sharp frames are 5, 7, 9
    s = meta.samples[1]
    blurry = read_image(tmp_path / "out" / s.blur_path)
    np.testing.assert_allclose(blurry, np.mean(frames[5:10], axis=0) / 255, atol=0.6 / 255)
    for path, k in zip(s.frame_paths, (5, 7, 9)):
        np.testing.assert_array_equal(read_image_raw(tmp_path / "out" / path), frames[k])
    # a folder of frames gives the same dataset (linear-light averaging this time)
    folder = tmp_path / "frames"
    folder.mkdir()

    for i, f in enumerate(frames[:20]):
        write_image(folder / f"{i}.png", f)
    meta2 = read_metadata(
        dataset_from_video(
            folder, tmp_path / "out2", num_frames=3, subframes=1, splits=(1, 0, 0), show_progress=False
        )
    )
    assert len(meta2.samples) == 6 and {s.partition for s in meta2.samples} == {"train"}
    lin = decode_gamma(np.stack(frames[3:6]) / np.float32(255), 2.2).mean(0)
    np.testing.assert_allclose(
        read_image(tmp_path / "out2" / meta2.samples[1].blur_path), encode_gamma(lin, 2.2), atol=0.6 / 255
    )


def test_plan_windows_never_straddles(tmp_path: Path) -> None:
    plan = plan_windows(100, window=7, stride=3, splits=(0.5, 0.25, 0.25), gap=2)
    bounds = {"train": (0, 50), "val": (52, 75), "test": (77, 100)}
    for part, first in plan:
        lo, hi = bounds[part]
        assert lo <= first and first + 7 <= hi
    assert [p for p, _ in plan].count("val") == 6
    with pytest.raises(ValueError, match="no window"):
        dataset_from_video(tmp_path, tmp_path / "out", num_frames=3, show_progress=False)  # no frames

"""hypercut.media: uint8 conversion, PNG / GIF / MP4 writers, frame strips."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from hypercut import media
from hypercut.data.io import read_image


def _smooth_frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(T, 3, H, W) float frames, smooth enough for lossy codecs, each frame distinct."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    frames = np.empty((t, 3, h, w), dtype=np.float32)
    for i in range(t):
        a, b, p = rng.uniform(1, 3, size=3)
        luma = np.sin(a * np.pi * xx + b * np.pi * yy + p + i)
        for c, (gain, offset) in enumerate(rng.uniform(0.2, 0.35, size=(3, 2))):
            frames[i, c] = offset + gain * (1 + luma)  # colour varies slowly, as in photographs
    return frames


def _decode_mp4(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


# ----------------------------------------------------------------------------------------- to_uint8
def test_to_uint8_rounds_clips_and_moves_channels_last() -> None:
    values = np.array([-0.1, 0.0, 0.5, 1.2, np.nan, 0.998], dtype=np.float32)
    frames = np.broadcast_to(values, (2, 3, 1, 6)).copy()
    out = media.to_uint8(frames)
    assert out.shape == (2, 1, 6, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0, :, 0], [0, 0, 128, 255, 0, 254])
    np.testing.assert_array_equal(media.to_uint8(torch.from_numpy(frames)), out)  # torch path agrees


def test_to_uint8_accepts_tensors_including_bf16_and_single_images() -> None:
    x = torch.rand(3, 5, 7)
    np.testing.assert_array_equal(media.to_uint8(x), media.to_uint8(x.numpy()))
    assert media.to_uint8(x.bfloat16()[None]).shape == (1, 5, 7, 3)
    u8 = np.zeros((2, 5, 7, 3), dtype=np.uint8)
    assert media.to_uint8(u8).shape == u8.shape  # already in the file layout: unchanged
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\)"):
        media.to_uint8(np.zeros((2, 4, 5, 5)))


# -------------------------------------------------------------------------------------- PNG frames
def test_save_frames_png_round_trip_is_exact(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).random((3, 3, 9, 11), dtype=np.float32)
    paths = media.save_frames(frames, tmp_path / "out")
    assert [p.name for p in paths] == ["frame_001.png", "frame_002.png", "frame_003.png"]
    expected = media.to_uint8(frames)
    for path, want in zip(paths, expected):
        back = read_image(path).transpose(2, 0, 1)
        assert back.shape == (3, 9, 11) and back.dtype == np.float32
        np.testing.assert_array_equal(media.to_uint8(back), want)


# --------------------------------------------------------------------------------------------- GIF
@pytest.mark.parametrize(("pingpong", "count"), [(False, 5), (True, 8)])
def test_save_gif_frame_count_size_and_loop(tmp_path: Path, pingpong: bool, count: int) -> None:
    frames = _smooth_frames(5, 21, 33)
    path = media.save_gif(frames, tmp_path / "a.gif", fps=10, pingpong=pingpong)
    with Image.open(path) as gif:
        assert gif.n_frames == count
        assert gif.size == (33, 21)
        assert gif.info.get("loop") == 0
        assert gif.info.get("duration") == 100


# --------------------------------------------------------------------------------------------- MP4
@pytest.mark.parametrize("codec", [None, "mpeg4"])
@pytest.mark.parametrize(("h", "w"), [(32, 48), (33, 47)])
def test_save_mp4_decodes_back(tmp_path: Path, codec: str | None, h: int, w: int) -> None:
    frames = _smooth_frames(6, h, w)
    path = media.save_mp4(frames, tmp_path / "a.mp4", fps=7.5, codec=codec)
    video = _decode_mp4(path)
    assert video.shape == (6, h + h % 2, w + w % 2, 3)  # odd sizes padded to even
    error = np.abs(video[:, :h, :w].astype(np.float32) - media.to_uint8(frames).astype(np.float32))
    assert error.mean() < 4.0, error.mean()
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == 7.5


def test_save_mp4_pads_by_replicating_the_last_row_and_column(tmp_path: Path) -> None:
    frames = np.zeros((3, 9, 15, 3), dtype=np.uint8)
    frames[:, -1, :] = 255  # a white last row must be repeated into the padding, not black
    video = _decode_mp4(media.save_mp4(frames, tmp_path / "pad.mp4"))
    assert video.shape[1:3] == (10, 16)
    assert video[:, -1, :8].mean() > 200


# ------------------------------------------------------------------------------------------- strip
def test_frame_strip_layout() -> None:
    blurry = torch.full((3, 10, 12), 0.2)
    pred = torch.full((4, 3, 10, 12), 0.6)
    strip = media.frame_strip(blurry, pred)
    assert strip.shape == (10, 5 * 12 + 4 * 2, 3) and strip.dtype == np.uint8
    assert (strip[:, :12] == 51).all() and (strip[:, 14:26] == 153).all() and (strip[:, 12:14] == 255).all()

    sharp = torch.full((4, 3, 10, 12), 1.0)
    grid = media.frame_strip(blurry, pred, sharp, separator=3, background=0)
    assert grid.shape == (2 * 10 + 3, 5 * 12 + 4 * 3, 3)
    assert (grid[13:, :12] == 0).all()  # empty cell under the blurry image
    assert (grid[13:, 15:27] == 255).all()
    with pytest.raises(ValueError, match="frames"):
        media.frame_strip(blurry, pred, sharp[:3])

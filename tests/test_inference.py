"""hypercut.inference: tiled prediction, the infer() folder run, weights-file round trip."""

from __future__ import annotations

import importlib
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from hypercut import media
from hypercut.data.io import read_image
from hypercut.inference import InferenceReport, choose_tile, deblur_image, expand_inputs, infer

T = 3


def _read_chw(path: Path) -> np.ndarray:
    """An image as the models take it: float ``(3, H, W)``."""
    return read_image(path).transpose(2, 0, 1)


class PerPixelNet(nn.Module):
    """A 1x1 convolution to T frames: every output pixel depends on its input pixel only."""

    def __init__(self, num_frames: int = T, seed: int = 0) -> None:
        super().__init__()
        self.num_frames = num_frames
        self.conv = nn.Conv2d(3, 3 * num_frames, 1)
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.8)
            self.conv.bias.fill_(0.5)

    def forward(self, blurry: Tensor) -> Tensor:
        return self.conv(blurry).unflatten(1, (self.num_frames, 3))


class SmallConvNet(nn.Module):
    """Two 3x3 convolutions (receptive field 5x5, zero padding): tile borders differ slightly."""

    def __init__(self, num_frames: int = T) -> None:
        super().__init__()
        self.num_frames = num_frames
        g = torch.Generator().manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3 * num_frames, 3, padding=1))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)

    def forward(self, blurry: Tensor) -> Tensor:
        return (blurry.unsqueeze(1) + 0.2 * self.body(blurry).unflatten(1, (self.num_frames, 3)))


def _image(h: int, w: int, seed: int = 0) -> Tensor:
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


def _multiframe_unet_cls() -> type[nn.Module] | None:
    for module, name in (("hypercut.models", "MultiFrameUNet"), ("hypercut.models.multiframe_unet", "MultiFrameUNet")):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return None


# ------------------------------------------------------------------------------------ deblur_image
@pytest.mark.parametrize(("h", "w", "tile", "overlap", "align"),
                         [(67, 93, 32, 8, 16), (40, 41, 24, 0, 16), (20, 90, 32, 12, 16), (37, 53, 20, 5, 1)])
def test_tiled_equals_untiled_for_a_per_pixel_net(h: int, w: int, tile: int, overlap: int, align: int) -> None:
    net, image = PerPixelNet(), _image(h, w)
    whole = deblur_image(net, image)
    tiled = deblur_image(net, image, tile=tile, overlap=overlap, align=align, batch_size=3)
    assert whole.shape == tiled.shape == (T, 3, h, w)
    assert whole.dtype == tiled.dtype == torch.float32
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)
    assert 0 <= whole.min() and whole.max() <= 1  # clamped (the bias pushes some values over 1)
    assert (whole == 0).any() and (whole == 1).any()


def test_tiled_conv_net_matches_when_the_margin_covers_its_receptive_field() -> None:
    net, image = SmallConvNet(), _image(67, 93)  # receptive radius 2
    whole = deblur_image(net, image)
    exact = deblur_image(net, image, tile=40, overlap=12)  # margin 12 // 4 = 3 >= 2
    torch.testing.assert_close(exact, whole, atol=1e-5, rtol=0)
    # Unaligned tiles with overlap 4: margin 1 < 2, the ramps alone soften the seams.
    close = (deblur_image(net, image, tile=40, overlap=4, align=1) - whole).abs()
    hard = (deblur_image(net, image, tile=40, overlap=0, align=1) - whole).abs()  # plain seams
    assert close.mean() < 1e-3 and close.max() < 0.5 * hard.max(), (close.max(), hard.max())


def test_tiled_unet_is_close_when_tiles_are_aligned() -> None:
    cls = _multiframe_unet_cls()
    if cls is None:
        pytest.skip("hypercut.models.MultiFrameUNet not available yet")
    torch.manual_seed(0)
    net = cls(num_frames=T, base_channels=8)  # depth 3: pads to multiples of 16
    with torch.no_grad():  # untrained it is the identity; make it a real (random) function
        for p in net.parameters():
            p.add_(torch.randn(p.shape) * 0.02)
    image = torch.nn.functional.avg_pool2d(_image(150, 203)[None], 5, 1, 2)[0]
    whole = deblur_image(net, image)
    assert (whole - image).abs().mean() > 0.02
    aligned = (deblur_image(net, image, tile=90, overlap=32) - whole).abs()  # align from pad_multiple
    unaligned = (deblur_image(net, image, tile=90, overlap=32, align=1) - whole).abs()
    assert aligned.max() < 0.02 and aligned.mean() < 1e-3, (aligned.max(), aligned.mean())
    assert unaligned.mean() > 10 * aligned.mean()


def test_auto_tiling_and_tile_bigger_than_image() -> None:
    net, image = PerPixelNet(), _image(50, 70)
    whole = deblur_image(net, image)
    torch.testing.assert_close(deblur_image(net, image, max_pixels=32 * 32, overlap=4), whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(deblur_image(net, image, tile=512), whole, atol=0, rtol=0)
    assert choose_tile(720, 1280, 1024 * 1024) is None
    assert choose_tile(2160, 3840, 1024 * 1024) == 1024
    assert choose_tile(100, 100, 60 * 60, overlap=8) == 48
    with pytest.raises(ValueError, match="overlap"):
        choose_tile(100, 100, 20 * 20, overlap=16)


def test_bf16_inference_restores_mode_and_checks_inputs() -> None:
    net, image = SmallConvNet().train(), _image(33, 35)
    out = deblur_image(net, image, bf16=True, tile=24, overlap=4)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, deblur_image(net, image), atol=0.05, rtol=0)
    assert net.training  # mode restored
    assert deblur_image(net, image.numpy()[None]).shape == (T, 3, 33, 35)  # (1, 3, H, W) arrays too
    with pytest.raises(ValueError, match="overlap"):
        deblur_image(net, image, tile=16, overlap=8)
    with pytest.raises(ValueError, match="align"):
        deblur_image(net, image, tile=24, overlap=10)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        deblur_image(net, torch.rand(4, 10, 10))
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        deblur_image(nn.Conv2d(3, 3, 1), image)


# -------------------------------------------------------------------------------------------- infer
def _write_inputs(folder: Path) -> tuple[Path, Path, Path]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    a, b, bad = folder / "a.png", folder / "b.jpg", folder / "broken.png"
    Image.fromarray(rng.integers(0, 256, (37, 51, 3), dtype=np.uint8)).save(a)
    Image.fromarray(rng.integers(0, 256, (45, 29), dtype=np.uint8)).save(b, quality=90)  # grey JPEG
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "notes.txt").write_text("ignored")
    return a, b, bad


def _check_outputs(out: Path, stem: str, size: tuple[int, int], num_frames: int = T) -> None:
    frames = sorted((out / stem).glob("frame_*.png"))
    assert [f.name for f in frames] == [f"frame_{i:03d}.png" for i in range(1, num_frames + 1)]
    with Image.open(frames[0]) as first:
        assert first.size == size[::-1]
    with Image.open(out / f"{stem}.gif") as gif:
        assert gif.n_frames == num_frames and gif.size == size[::-1]
    with av.open(str(out / f"{stem}.mp4")) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == num_frames
    assert decoded[0].shape[:2] == (size[0] + size[0] % 2, size[1] + size[1] % 2)


def test_infer_folder_with_a_corrupt_file(tmp_path: Path) -> None:
    a, b, bad = _write_inputs(tmp_path / "in")
    report = infer(PerPixelNet(), [tmp_path / "in", tmp_path / "nope.png"], tmp_path / "out", fps=5)
    assert isinstance(report, InferenceReport)
    assert report.processed == [a, b]
    assert [p for p, _ in report.failed] == [tmp_path / "nope.png", bad]
    assert "broken.png: not a readable image" in report.failed[1][1]
    assert "not found" in report.failed[0][1]
    assert not report.ok and "FAILED" in report.summary()
    _check_outputs(tmp_path / "out", "a", (37, 51))
    _check_outputs(tmp_path / "out", "b", (45, 29))
    assert len(report.written) == 2 * (T + 2) and all(p.is_file() for p in report.written)


def test_infer_formats_duplicate_stems_and_tiling(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "x" / "img.png")
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "y" / "img.png")
    net = PerPixelNet()
    report = infer(net, [tmp_path / "x" / "img.png", tmp_path / "y", tmp_path / "x"], tmp_path / "out",
                   formats=("png",), max_pixels=32 * 32, overlap=4, progress=False)
    assert report.ok and len(report.processed) == 2  # x/img.png listed twice, processed once
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img", "img-2"]
    written = _read_chw(tmp_path / "out" / "img-2" / "frame_002.png")
    expected = deblur_image(net, _read_chw(tmp_path / "y" / "img.png"))[1]
    np.testing.assert_array_equal(media.to_uint8(written), media.to_uint8(expected))
    with pytest.raises(ValueError, match="formats"):
        infer(net, [], tmp_path / "o2", formats=("avi",))


class GreedyNet(PerPixelNet):
    """Runs out of (CUDA) memory on inputs larger than ``limit`` pixels, or always."""

    def __init__(self, limit: int | None) -> None:
        super().__init__()
        self.limit = limit
        self.sizes: list[tuple[int, int]] = []

    def forward(self, blurry: Tensor) -> Tensor:
        self.sizes.append(tuple(blurry.shape[-2:]))
        if self.limit is None or blurry.shape[-2] * blurry.shape[-1] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return super().forward(blurry)


def test_infer_retries_smaller_tiles_when_memory_runs_out(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(folder / name)

    net = GreedyNet(limit=40 * 40)  # the whole image (6300 px) and 3-4k-pixel tiles do not fit
    report = infer(net, folder, tmp_path / "out", overlap=4, formats=("png",), progress=False)
    assert report.ok and len(report.processed) == 2
    assert net.sizes[0] == (70, 90) and max(h * w for h, w in net.sizes[-4:]) <= 40 * 40
    written = _read_chw(tmp_path / "out" / "a" / "frame_001.png")
    expected = deblur_image(PerPixelNet(), _read_chw(folder / "a.png"))[0]
    np.testing.assert_array_equal(media.to_uint8(written), media.to_uint8(expected))

    report = infer(GreedyNet(limit=None), folder, tmp_path / "out2", overlap=4, progress=False)
    assert report.processed == [] and [p.name for p, _ in report.failed] == ["a.png", "b.png"]
    assert "out of memory" in report.failed[0][1]

    with pytest.raises(RuntimeError, match="boom"):  # other errors are bugs: they propagate
        infer(BrokenNet(), folder, tmp_path / "out3", progress=False)


class BrokenNet(nn.Module):
    def forward(self, blurry: Tensor) -> Tensor:
        raise RuntimeError("boom")


def test_expand_inputs_reports_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    files, problems = expand_inputs([tmp_path / "empty"])
    assert files == [] and problems[0][0] == tmp_path / "empty" and "no image files" in problems[0][1]


def test_weights_file_round_trip_and_cli(tmp_path: Path) -> None:
    cls = _multiframe_unet_cls()
    if cls is None:
        pytest.skip("hypercut.models.MultiFrameUNet not available yet")
    from hypercut.export import save_weights, spec_of

    kwargs = {"num_frames": T, "base_channels": 8, "depth": 1}
    net = cls(**kwargs)
    with torch.no_grad():  # the untrained model is the identity; make the frames differ
        g = torch.Generator().manual_seed(0)
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    weights = save_weights(net, tmp_path / "w.pt", spec_of(net, **kwargs))
    rng = np.random.default_rng(3)
    image = tmp_path / "in" / "photo.png"
    image.parent.mkdir()
    Image.fromarray(rng.integers(0, 256, (27, 35, 3), dtype=np.uint8)).save(image)

    report = infer(weights, image, tmp_path / "out", progress=False)
    assert report.ok
    _check_outputs(tmp_path / "out", "photo", (27, 35))
    expected = media.to_uint8(deblur_image(net, _read_chw(image)))
    for i in range(T):
        got = media.to_uint8(_read_chw(tmp_path / "out" / "photo" / f"frame_{i + 1:03d}.png"))
        np.testing.assert_array_equal(got, expected[i])


"""Data layer: metadata format, image IO, datasets, paired augmentation, packed store, DataModule, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from hypercut.cli import data_main
from hypercut.data import (
    BlurSequenceDataset,
    CenterCropMultiple,
    DatasetValidationError,
    ImageFolderDataset,
    PackedSequenceDataset,
    PairedAugment,
    check_dataset,
    collate_sequences,
    pack_dataset,
    read_image,
    read_metadata,
    validate_dataset,
    write_metadata,
)
from hypercut.data import io as data_io
from hypercut.data.packed import find_packed
from hypercut.data.transforms import crop_shape


def _load(root: Path) -> dict:
    return json.loads((root / "metadata.json").read_text())


def _save(root: Path, meta: dict) -> None:
    (root / "metadata.json").write_text(json.dumps(meta))


# ----------------------------------------------------------------------------------------- metadata
def test_metadata_round_trip_keeps_everything(tiny_dataset: Path, tmp_path: Path) -> None:
    raw = _load(tiny_dataset)
    raw["data"][0]["note"] = "kept"
    raw["version"] = 3
    _save(tiny_dataset, raw)
    meta = read_metadata(tiny_dataset / "metadata.json")
    assert meta.frame_per_seq == 7 and len(meta.samples) == 6
    assert [s.partition for s in meta.samples] == ["train"] * 2 + ["val"] * 2 + ["test"] * 2
    assert meta.samples[0].frame_paths[2] == "00000/sharp/003.png"
    out = write_metadata(meta, tmp_path / "copy.json")
    assert json.loads(out.read_text()) == raw
    assert read_metadata(out) == meta


def test_validation_reports_every_problem_at_once(tiny_dataset: Path) -> None:
    raw = _load(tiny_dataset)
    raw["data"][0]["partition"] = "holdout"  # data[0]: unknown partition
    del raw["data"][1]["frame007_path"]  # data[1]: 6 frames for frame_per_seq 7
    raw["data"][2]["order"] = "forward"  # data[2]: unknown order
    (tiny_dataset / "00003" / "sharp" / "003.png").unlink()  # data[3]: missing file
    raw["data"][4]["blur_path"] = "../outside.png"  # data[4]: escapes the root
    raw["data"][5]["frame002_path"] = "/etc/passwd"  # data[5]: absolute path
    del raw["data"][5]["id"]  # data[5]: missing field
    _save(tiny_dataset, raw)

    problems = validate_dataset(tiny_dataset)
    expected = [
        "metadata.json: data[0].partition: unknown partition 'holdout'",
        "metadata.json: data[1].frame007_path: missing field",
        "metadata.json: data[2].order: unknown order 'forward'",
        "metadata.json: data[3].frame003_path: file not found: 00003/sharp/003.png",
        "metadata.json: data[4].blur_path: path escapes the dataset root: ../outside.png",
        "metadata.json: data[5].id: missing field",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    with pytest.raises(DatasetValidationError) as info:
        check_dataset(tiny_dataset)
    assert info.value.problems == problems
    with pytest.raises(DatasetValidationError, match="data\\[3\\].frame003_path: file not found"):
        BlurSequenceDataset(tiny_dataset, split="val")


def test_validation_absolute_path_duplicate_id_and_extra_frame(tiny_dataset: Path) -> None:
    raw = _load(tiny_dataset)
    raw["data"][0]["frame002_path"] = "/tmp/x.png"
    raw["data"][1]["id"] = raw["data"][0]["id"]
    raw["data"][2]["frame008_path"] = "00002/sharp/007.png"
    _save(tiny_dataset, raw)
    problems = validate_dataset(tiny_dataset)
    assert "metadata.json: data[0].frame002_path: absolute path not allowed: /tmp/x.png" in problems
    assert any(p.startswith("metadata.json: data[1].id: duplicate id '00000'") for p in problems)
    assert any(
        p.startswith("metadata.json: data[2].frame008_path: frame 8 outside frame_per_seq = 7")
        for p in problems
    )
    assert len(problems) == 3


def test_validation_of_malformed_or_missing_metadata(tiny_dataset: Path, tmp_path: Path) -> None:
    (tiny_dataset / "metadata.json").write_text('{"name": "x", "data": [')
    (problem,) = validate_dataset(tiny_dataset)
    assert problem.startswith("metadata.json: invalid JSON")
    assert validate_dataset(tmp_path / "nowhere")[0].startswith("metadata.json: file not found")
    _save(tiny_dataset, {"name": "x", "frame_per_seq": 2, "data": {}})
    problems = validate_dataset(tiny_dataset)
    assert "metadata.json: frame_per_seq: must be an integer >= 3, got 2" in problems
    assert "metadata.json: data: must be a list, got dict" in problems


def test_size_check_and_read_error_name_both_files(tiny_dataset: Path) -> None:
    Image.fromarray(np.zeros((16, 40, 3), np.uint8)).save(tiny_dataset / "00001" / "sharp" / "004.png")
    (problem,) = validate_dataset(tiny_dataset)
    assert problem.startswith("metadata.json: data[1].frame004_path: size 16x40 of 00001/sharp/004.png")
    assert "00001/blur.png (32x40)" in problem
    ds = BlurSequenceDataset(tiny_dataset, split="train")  # existence-only validation passes
    with pytest.raises(ValueError) as info:
        ds[1]
    msg = str(info.value)
    assert "00001/sharp/004.png" in msg and "00001/blur.png" in msg and "16x40" in msg and "32x40" in msg


# ----------------------------------------------------------------------------------------- image IO
@pytest.mark.parametrize("decoder", ["rgb", "unchanged"])
@pytest.mark.parametrize("kind", ["rgb8", "rgb16", "grey8", "grey16", "greyalpha", "rgba", "jpeg"])
def test_read_image_formats(tmp_path: Path, kind: str, decoder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if decoder == "unchanged":  # the path for OpenCV builds without IMREAD_COLOR_RGB
        monkeypatch.setattr(data_io, "_IMREAD_RGB", None)
    rng = np.random.default_rng(0)
    rgb8 = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    grey8 = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    path = tmp_path / f"{kind}.png"
    if kind == "rgb8":
        Image.fromarray(rgb8).save(path)
        expected = rgb8 / 255
    elif kind == "rgb16":
        rgb16 = rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
        cv2.imwrite(str(path), rgb16[:, :, ::-1])
        expected = rgb16 / 65535
    elif kind == "grey8":
        Image.fromarray(grey8).save(path)
        expected = np.repeat(grey8[:, :, None], 3, 2) / 255
    elif kind == "grey16":
        g16 = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
        Image.fromarray(g16).save(path)
        assert Image.open(path).mode == "I;16"
        expected = np.repeat(g16[:, :, None], 3, 2) / 65535
    elif kind == "greyalpha":
        Image.fromarray(np.stack([grey8, np.full_like(grey8, 7)], -1), "LA").save(path)
        expected = np.repeat(np.round((grey8 * 7.0 + 255 * (255 - 7)) / 255)[:, :, None], 3, 2) / 255  # over white
    elif kind == "rgba":
        Image.fromarray(np.concatenate([rgb8, np.full((6, 5, 1), 9, np.uint8)], -1), "RGBA").save(path)
        expected = np.round((rgb8 * 9.0 + 255 * (255 - 9)) / 255) / 255  # over white
    else:
        path = tmp_path / "img.jpg"
        flat = np.zeros((16, 16, 3), np.uint8) + np.array([200, 100, 50], np.uint8)
        Image.fromarray(flat).save(path, quality=95)
        expected = flat / 255
    img = read_image(path)
    assert img.dtype == np.float32 and img.shape == expected.shape
    tol = 3 / 255 if kind == "jpeg" else 1e-6
    np.testing.assert_allclose(img, expected, atol=tol)


# ----------------------------------------------------------------------------------------- dataset
def test_items_follow_the_batch_contract(tiny_dataset: Path) -> None:
    ds = BlurSequenceDataset(tiny_dataset, split="val")
    assert len(ds) == 2 and ds.num_frames == 7
    item = ds[0]
    assert item["blurry"].shape == (3, 32, 40) and item["blurry"].dtype == torch.float32
    assert item["sharp"].shape == (7, 3, 32, 40) and item["sharp"].dtype == torch.float32
    assert item["id"] == "00002" and item["reversed"] is False
    assert 0.0 <= float(item["sharp"].min()) and float(item["sharp"].max()) <= 1.0
    # the fixture's blurry image is the mean of its frames
    assert torch.allclose(item["blurry"], item["sharp"].mean(0), atol=1 / 255)


def test_reverse_and_random_orders(make_tiny_dataset) -> None:
    root = make_tiny_dataset(num_samples=3, partitions=["train"] * 3, orders=["ignore", "reverse", "random"])
    stored = BlurSequenceDataset(root, split="train", validate=False)
    plain = [stored.read_arrays(i)[1] for i in range(3)]
    item = stored[1]
    assert item["reversed"] is True
    assert torch.equal(item["sharp"], torch.from_numpy(plain[1][::-1].copy()).permute(0, 3, 1, 2))
    flags = []
    for _ in range(24):
        item = stored[2]
        expected = plain[2][::-1] if item["reversed"] else plain[2]
        assert torch.equal(item["sharp"], torch.from_numpy(expected.copy()).permute(0, 3, 1, 2))
        flags.append(item["reversed"])
    assert 0 < sum(flags) < len(flags)  # redrawn on every read
    a = BlurSequenceDataset(root, split="train", seed=5)
    b = BlurSequenceDataset(root, split="train", seed=5)
    assert [a[2]["reversed"] for _ in range(12)] == [b[2]["reversed"] for _ in range(12)]


def test_worker_generators_differ_and_reproduce(make_tiny_dataset) -> None:
    root = make_tiny_dataset(num_samples=8, partitions=["train"] * 8, orders=["random"] * 8)

    def draw(blurry, sharp, rng):  # the value shows which generator state a read used
        return np.full_like(blurry, rng.random()), sharp

    def epochs(torch_seed: int, seed: int | None = 1) -> list[list[float]]:
        torch.manual_seed(torch_seed)
        ds = BlurSequenceDataset(root, split="train", transform=draw, seed=seed)
        loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate_sequences)
        draws = []
        for epoch in range(2):
            ds.set_epoch(epoch)  # what EpochShuffleSampler does when Lightning starts an epoch
            draws.append([float(b["blurry"][0, 0, 0, 0]) for b in loader])
        return draws

    first, second = epochs(0)
    assert first[0::2] != first[1::2]  # worker 0 (items 0, 2, ...) and worker 1 draw differently
    assert first != second  # and differently in every epoch
    assert epochs(0) == epochs(7) == [first, second]  # a function of (seed, epoch, worker) only
    # Without a dataset seed the draws follow torch's seed (seed_everything(..., workers=True)).
    unseeded = epochs(0, seed=None)
    assert unseeded[0] != unseeded[1] and epochs(0, seed=None) == unseeded != epochs(1, seed=None)


def _coordinate_sample(h: int = 30, w: int = 44, t: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Blurry encodes pixel coordinates in R, G; frame k adds k / 10 in B."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    blurry = np.stack([xx / (w - 1), yy / (h - 1), np.zeros_like(xx)], -1)
    sharp = np.stack([blurry + np.array([0, 0, (k + 1) / 10], np.float32) for k in range(t)])
    return blurry, sharp


def test_paired_crop_and_flips_are_pixel_aligned() -> None:
    blurry, sharp = _coordinate_sample()
    aug = PairedAugment(crop_size=(12, 16), hflip=True, vflip=True)
    orientations = set()
    for seed in range(16):
        b, s = aug(blurry, sharp, np.random.default_rng(seed))
        assert b.shape == (12, 16, 3) and s.shape == (5, 12, 16, 3)
        for k in range(5):
            np.testing.assert_array_equal(s[k, :, :, :2], b[:, :, :2])
            np.testing.assert_allclose(s[k, :, :, 2], (k + 1) / 10, rtol=1e-6)
        dx = np.diff(b[:, :, 0] * 43, axis=1)
        dy = np.diff(b[:, :, 1] * 29, axis=0)
        assert np.allclose(np.abs(dx), 1, atol=1e-4) and np.allclose(np.abs(dy), 1, atol=1e-4)  # a real crop
        orientations.add((float(np.sign(dx[0, 0])), float(np.sign(dy[0, 0]))))
    assert orientations == {(1.0, 1.0), (-1.0, 1.0), (1.0, -1.0), (-1.0, -1.0)}


def test_affine_and_colour_jitter_share_one_draw() -> None:
    blurry, sharp = _coordinate_sample()
    aug = PairedAugment(crop_size=24, hflip=True, affine=True, color_jitter=0.3)
    copies = np.stack([blurry] * 4)
    changed = False
    for seed in range(6):
        b, s = aug(blurry, copies, np.random.default_rng(seed))
        for k in range(4):
            np.testing.assert_allclose(s[k], b, atol=1e-6)
        b2, _ = aug(blurry, copies, np.random.default_rng(seed))
        np.testing.assert_array_equal(b, b2)  # deterministic for a generator state
        changed |= not np.allclose(b, blurry[:24, :24], atol=1e-3)
    assert changed
    noisy = PairedAugment(crop_size=24, hflip=False, noise_std=0.2)
    b, s = noisy(blurry, sharp, np.random.default_rng(0))
    assert np.all((b >= 0) & (b <= 1))
    assert float(b[:, :, 2].max()) > 0.01  # noise on the blurry input (its B channel was 0) ...
    targets = np.broadcast_to(np.arange(1, 6)[:, None, None] / 10, (5, 24, 24))
    np.testing.assert_allclose(s[:, :, :, 2], targets, rtol=1e-6)  # ... never on the targets


def test_crop_multiple_rounds_down() -> None:
    assert crop_shape(100, 120, 256 // 4, multiple=20) == (60, 60)
    assert crop_shape(100, 120, (50, 70), multiple=20) == (40, 60)
    with pytest.raises(ValueError, match="does not fit"):
        crop_shape(32, 40, 64)
    sample = _coordinate_sample(h=50, w=70)
    b, s = PairedAugment(crop_size=50, crop_multiple=20, hflip=False)(*sample, np.random.default_rng(0))
    assert b.shape[:2] == (40, 40) and s.shape[1:3] == (40, 40)
    b, s = CenterCropMultiple(20)(*_coordinate_sample(h=50, w=70))
    assert b.shape[:2] == (40, 60)
    assert b[0, 0, 0] == pytest.approx(5 / 69) and b[0, 0, 1] == pytest.approx(5 / 49)


# ----------------------------------------------------------------------------------------- packed store
def test_packed_store_gives_the_same_pixels(make_tiny_dataset) -> None:
    root = make_tiny_dataset(orders=["random", "reverse", "ignore", "ignore", "ignore", "ignore"])
    out = pack_dataset(root, show_progress=False)
    arr = np.load(out / "train.npy", mmap_mode="r")
    assert arr.shape == (2, 8, 32, 40, 3) and arr.dtype == np.uint8
    index = json.loads((out / "train.json").read_text())
    assert index["ids"] == ["00000", "00001"] and index["orders"] == ["random", "reverse"]
    aug = PairedAugment(crop_size=(16, 24), hflip=True, vflip=True, color_jitter=0.1)
    files = BlurSequenceDataset(root, split="train", transform=aug, seed=3)
    packed = PackedSequenceDataset(out, "train", transform=aug, seed=3)
    for _ in range(3):
        for i in range(2):
            a, b = files[i], packed[i]
            assert a["id"] == b["id"] and a["reversed"] == b["reversed"]
            assert torch.equal(a["blurry"], b["blurry"]) and torch.equal(a["sharp"], b["sharp"])
    full = PackedSequenceDataset(out, "test")[1]
    ref = BlurSequenceDataset(root, split="test")[1]
    assert torch.equal(full["sharp"], ref["sharp"]) and full["blurry"].shape == (3, 32, 40)


def test_packing_16_bit_and_mixed_sizes(make_tiny_dataset) -> None:
    root = make_tiny_dataset(num_samples=3, partitions=["train", "train", "test"])
    frame = root / "00000" / "sharp" / "002.png"
    value = np.full((32, 40, 3), 1000, np.uint16)
    cv2.imwrite(str(frame), value)
    out = pack_dataset(root, show_progress=False)
    arr = np.load(out / "train.npy")
    assert arr.dtype == np.uint16
    assert np.all(arr[0, 2] == 1000)  # 16-bit source kept exactly
    assert arr[0, 0, 0, 0, 0] % 257 == 0  # 8-bit source scaled by 257
    item = PackedSequenceDataset(out, "train")[0]
    assert torch.allclose(item["sharp"][1], torch.full((3, 32, 40), 1000 / 65535))
    for image in [root / "00001" / "blur.png", *(root / "00001" / "sharp").glob("*.png")]:
        Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(image)
    with pytest.raises(ValueError, match=r"split 'train'.*2 sizes: 32x40.*20x40 \(e.g. 00001/blur.png\)"):
        pack_dataset(root, show_progress=False)


def test_stale_packed_store_is_ignored(tiny_dataset: Path) -> None:
    pack_dataset(tiny_dataset, splits=["train"], show_progress=False)
    assert find_packed(tiny_dataset, "train")[0] == tiny_dataset / "packed"
    assert find_packed(tiny_dataset, "val")[0] is None
    raw = _load(tiny_dataset)
    raw["name"] = "changed"
    _save(tiny_dataset, raw)
    folder, reason = find_packed(tiny_dataset, "train")
    assert folder is None and "stale" in reason


# ----------------------------------------------------------------------------------------- DataModule
def test_datamodule_batches(tiny_dataset: Path) -> None:
    from hypercut.data import BlurSequenceDataModule

    dm = BlurSequenceDataModule(tiny_dataset, batch_size=2, crop_size=16, vflip=True, seed=0)
    dm.setup("fit")
    assert dm.num_frames == 7 and dm.has_split("val") and not dm.has_split("nonexistent")
    batch = next(iter(dm.train_dataloader()))
    assert batch["blurry"].shape == (2, 3, 16, 16) and batch["sharp"].shape == (2, 7, 3, 16, 16)
    assert batch["reversed"].dtype == torch.bool and batch["reversed"].shape == (2,)
    assert sorted(batch["id"]) == ["00000", "00001"]
    val = next(iter(dm.val_dataloader()))  # full resolution, one size -> batch_size
    assert val["blurry"].shape == (2, 3, 32, 40) and val["sharp"].shape == (2, 7, 3, 32, 40)
    assert val["id"] == ["00002", "00003"]
    test = BlurSequenceDataModule(tiny_dataset, batch_size=2, eval_crop_multiple=20).test_dataloader()
    assert next(iter(test))["blurry"].shape == (2, 3, 20, 40)
    assert isinstance(dm.dataset("train"), BlurSequenceDataset)


def test_datamodule_packed_empty_split_and_mixed_sizes(make_tiny_dataset, tmp_path: Path) -> None:
    from hypercut.data import BlurSequenceDataModule

    root = make_tiny_dataset(num_samples=3, partitions=["train", "train", "test"])
    pack_dataset(root, show_progress=False)
    dm = BlurSequenceDataModule(root, batch_size=2, crop_size=16)
    assert isinstance(dm.dataset("train"), PackedSequenceDataset)  # packed=None picks the packed store
    assert next(iter(dm.train_dataloader()))["sharp"].shape == (2, 7, 3, 16, 16)
    assert isinstance(BlurSequenceDataModule(root, packed=False).dataset("train"), BlurSequenceDataset)
    with pytest.raises(ValueError, match="no samples with partition 'val'"):
        dm.val_dataloader()

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.zeros((24, 30, 3), np.uint8)).save(folder / "b.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(folder / "a.jpg")
    items = [ImageFolderDataset(folder)[i] for i in range(2)]
    with pytest.raises(ValueError, match="different sizes.*eval_batch_size=1"):
        collate_sequences(items)


# ----------------------------------------------------------------------------------------- CLI, imports
def test_cli_validate_and_pack(tiny_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert data_main(["validate", str(tiny_dataset), "--full"]) == 0
    assert "OK" in capsys.readouterr().out
    assert data_main(["pack", str(tiny_dataset), "--quiet", "--splits", "val"]) == 0
    assert (tiny_dataset / "packed" / "val.npy").is_file()
    capsys.readouterr()
    (tiny_dataset / "00003" / "blur.png").unlink()
    (tiny_dataset / "00004" / "sharp" / "001.png").unlink()
    assert data_main(["validate", str(tiny_dataset)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "metadata.json: data[3].blur_path: file not found: 00003/blur.png",
        "metadata.json: data[4].frame001_path: file not found: 00004/sharp/001.png",
    ]


def test_import_hypercut_is_light() -> None:
    code = (
        "import sys, json; import hypercut; a = sorted(sys.modules);"
        "import hypercut.data; b = sorted(sys.modules); print(json.dumps([a, b]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    after_hypercut, after_data = (set(m) for m in json.loads(out))
    heavy = {"lightning", "pytorch_lightning", "hydra", "omegaconf", "wandb"}
    assert not heavy & {m.split(".")[0] for m in after_hypercut}
    assert not heavy & {m.split(".")[0] for m in after_data}  # the DataModule loads Lightning lazily
    assert "hypercut.data" in after_data

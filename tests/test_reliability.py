"""Bad input, hostile files and interruptions: each case of docs/RELIABILITY.md fails cleanly.

Weights files that name code, remote checkpoints, diverged ordering runs, corrupt images, stale or
concurrent packed stores, SIGTERM, resumes and outputs that would be overwritten.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from hypercut import tasks
from hypercut.export import FORMAT, build_from_spec, load_pretrained, save_weights
from hypercut.inference import expand_inputs, infer
from hypercut.models import MultiFrameUNet

TINY_NET = {"_target_": "hypercut.models.MultiFrameUNet", "num_frames": 3, "base_channels": 8}


def _file_writer(target: Path) -> dict:
    """A spec that, built by Hydra's ``instantiate``, writes ``target``."""
    write = {"_target_": "pathlib.Path.write_text", "_args_": [{"_target_": "pathlib.Path", "_args_": [str(target)]}, "x"]}
    return {"_target_": "hypercut.tasks.instantiate", "config": [write]}


# ------------------------------------------------------------------------------------------- weights
@pytest.mark.parametrize(
    "where",
    ["top", "nested", "in_list"],
)
def test_weights_spec_naming_code_is_refused_and_builds_nothing(tmp_path: Path, where: str) -> None:
    target = tmp_path / "written.txt"
    gadget = _file_writer(target)
    if where == "top":
        spec, key = gadget, "spec._target_"
    elif where == "nested":
        spec = {"_target_": "hypercut.ordering.OrderingModel", "encoder": {"_target_": "hypercut.data.synth.synthesize_dataset", "out": str(tmp_path / "ds")}, "hyperplane": gadget}
        key = "spec.encoder._target_"
    else:
        spec, key = {**TINY_NET, "extra": [gadget]}, "spec.extra[0]._target_"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "spec": spec, "state_dict": {}}, path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: {key}: ")):
        load_pretrained(path)
    assert not target.exists() and not (tmp_path / "ds").exists()


def test_checkpoint_hyper_parameters_spec_naming_code_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "written.txt"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"net_spec": _file_writer(target)}}, ckpt)
    with pytest.raises(ValueError, match=rf"{ckpt}: hyper_parameters.net_spec._target_"):
        tasks.export_checkpoint(ckpt, tmp_path / "out.pt")
    assert not target.exists() and not (tmp_path / "out.pt").exists()


def test_only_module_classes_are_allowed() -> None:
    from hypercut.export import MODEL_CLASSES

    assert all(isinstance(c, type) and issubclass(c, torch.nn.Module) for c in MODEL_CLASSES)
    with pytest.raises(ValueError, match=r"w.pt: spec._target_: 'hypercut.export.save_weights'"):
        build_from_spec({"_target_": "hypercut.export.save_weights"}, "w.pt")
    with pytest.raises(ValueError, match=r"spec._partial_: only _target_"):
        build_from_spec({**TINY_NET, "_partial_": True})
    assert isinstance(build_from_spec(TINY_NET), MultiFrameUNet)


def test_export_refuses_to_overwrite_its_checkpoint(tmp_path: Path) -> None:
    net = build_from_spec(TINY_NET)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "hyper_parameters": {"net_spec": TINY_NET}}, ckpt)
    before = ckpt.read_bytes()
    with pytest.raises(ValueError, match="would replace the checkpoint"):
        tasks.export(tasks.compose("export", [f"ckpt={ckpt}", f"out={tmp_path / '.' / 'last.ckpt'}"], output_dir=tmp_path))
    assert ckpt.read_bytes() == before
    assert load_pretrained(tasks.export_checkpoint(ckpt, tmp_path / "w.pt")).num_frames == 3


def test_non_finite_weights_are_not_exported(tmp_path: Path) -> None:
    net = build_from_spec(TINY_NET)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite weights"):
        save_weights(net, tmp_path / "w.pt", TINY_NET)
    assert not (tmp_path / "w.pt").exists()


# ------------------------------------------------------------------------------------------- runs
def _train_overrides(root: Path, out: Path, steps: int) -> list[str]:
    return [
        f"paths.root_dir={out.parent}",
        "data=folder",
        f"data.root={root}",
        "data.batch_size=2",
        "data.crop_size=32",
        "logger=csv",
        "model/net=tiny",
        "model/loss=naive",
        "model.scheduler.warmup_steps=1",
        f"trainer.max_steps={steps}",
        "trainer.log_every_n_steps=1",
        "+trainer.limit_val_batches=1",
        "+trainer.enable_progress_bar=false",
        "test=false",
    ]


def _train(root: Path, out: Path, steps: int, extra: list[str] = ()) -> None:  # type: ignore[assignment]
    tasks.train(tasks.compose("train", [*_train_overrides(root, out, steps), *extra], output_dir=out))


class _Payload:
    """Unpickling this runs code: it writes ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return exec, (f"open({self.path!r}, 'w').write('ran')",)


def test_remote_checkpoint_is_refused_before_any_request(tiny_dataset: Path, tmp_path: Path) -> None:
    import http.server
    import threading

    ran = tmp_path / "ran.txt"
    served = tmp_path / "www"
    served.mkdir()
    torch.save({"state_dict": _Payload(ran)}, served / "x.ckpt")
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, format: str, *args) -> None:  # type: ignore[no-untyped-def]
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/x.ckpt"
    try:
        with pytest.raises(ValueError, match="remote checkpoints are not loaded"):
            _train(tiny_dataset, tmp_path / "run", steps=2, extra=[f"ckpt_path={url}"])
    finally:
        server.shutdown()
    assert not ran.exists() and requests == []


def test_resume_keeps_the_csv_history_and_a_bad_checkpoint_is_named(make_tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = make_tiny_dataset("resume", num_samples=6, partitions=["train"] * 4 + ["val"] * 2)
    run = tmp_path / "run"
    _train(root, run, steps=2)
    history = run / "csv" / "metrics.csv"
    before = history.read_text()
    assert before.count("\n") > 2

    last = run / "checkpoints" / "last.ckpt"
    good = last.read_bytes()
    last.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=re.escape(f"{last} is not a readable checkpoint")):
        _train(root, run, steps=4, extra=["ckpt_path=last"])
    assert history.read_text() == before

    last.write_bytes(good)
    _train(root, run, steps=4, extra=["ckpt_path=last"])
    assert history.read_text() == before
    resumed = (run / "csv" / "resume_1" / "metrics.csv").read_text()
    assert "train/loss" in resumed and resumed.count("\n") > 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_signal_writes_checkpoint_weights_metrics_and_exits_non_zero(tiny_dataset: Path, tmp_path: Path, signum: int) -> None:
    run = tmp_path / "run"
    args = [*_train_overrides(tiny_dataset, run, steps=100_000), f"hydra.run.dir={run}", "+logger.csv.flush_logs_every_n_steps=1"]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    script = Path(sys.executable).parent / "hypercut-train"
    proc = subprocess.Popen([str(script), *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    history = run / "csv" / "metrics.csv"
    deadline = time.monotonic() + 120
    while not (history.is_file() and history.read_text().count("train/loss") and history.read_text().count("\n") > 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    proc.send_signal(signum)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signum, output[-3000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] >= 1
    assert ckpt["optimizer_states"] and ckpt["lr_schedulers"]  # the full state: resumable, not weights only
    assert load_pretrained(run / "weights.pt").num_frames == 7
    assert "train/loss" in json.loads((run / "metrics.json").read_text())


# ------------------------------------------------------------------------------------------- ordering
def test_nan_scores_are_not_consistent() -> None:
    from hypercut.metrics.ordering import OrderingMetrics

    metrics = OrderingMetrics(3)
    u = torch.tensor([[1.0, 2.0, 3.0], [float("nan")] * 3, [1.0, float("nan"), 2.0], [-1.0, -1.0, float("nan")]])
    metrics.update(u, -u)
    values = metrics.compute()
    assert values["con2"].item() == pytest.approx(2 / 4)
    assert values["con3"].item() == pytest.approx(1 / 4)


def test_diverging_ordering_run_stops_and_writes_no_weights(tiny_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = [
        *_train_overrides(tiny_dataset, run, steps=6),
        "experiment=ordering",
        "validate_untrained=false",
        "model.optimizer.lr=1e30",
        "model/encoder=small",
        "model.encoder.width=8",
        "model.encoder.dims=[8,8]",
        "model.encoder.num_res_blocks=1",
        "model.encoder.out_dim=8",
    ]
    for deblur_only in ("model/net=tiny", "model/loss=naive", "model.scheduler.warmup_steps=1"):
        overrides.remove(deblur_only)
    with pytest.raises(FloatingPointError, match=r"non-finite training loss \(nan\) at step \d+, batch 0, sample ids"):
        tasks.train(tasks.compose("train", overrides, output_dir=run))
    assert not (run / "weights.pt").exists()


# ------------------------------------------------------------------------------------------- image I/O
def _write_png16_rgb(path: Path, array: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = array.shape
    data = array.astype(">u2")
    raw = b"".join(b"\x00" + data[i].tobytes() for i in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _photo(path: Path, size: tuple[int, int] = (128, 96), **save: object) -> np.ndarray:
    """A smooth random RGB image saved at ``path``; returns its pixels."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(small).resize((size[1], size[0]), Image.Resampling.BILINEAR))
    Image.fromarray(pixels).save(path, **save)
    return pixels


def test_read_image_modes(tmp_path: Path) -> None:
    from hypercut.data.io import read_image

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (7, 9), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (7, 9), dtype=np.uint16)

    Image.fromarray(grey).save(tmp_path / "g.png")
    np.testing.assert_allclose(read_image(tmp_path / "g.png"), np.stack([grey / 255] * 3, -1), atol=1e-6)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    np.testing.assert_allclose(read_image(tmp_path / "g16.png")[..., 1], grey16 / 65535, atol=1e-6)
    rgb16 = rng.integers(0, 65536, (7, 9, 3), dtype=np.uint16)
    _write_png16_rgb(tmp_path / "c16.png", rgb16)
    np.testing.assert_allclose(read_image(tmp_path / "c16.png"), rgb16 / 65535, atol=1e-6)

    alpha = np.zeros((7, 9), dtype=np.uint8)
    alpha[:, :4] = 255
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "a.png")
    rgba = read_image(tmp_path / "a.png")
    np.testing.assert_allclose(rgba[:, :4], rgb[:, :4] / 255, atol=1e-6)
    assert (rgba[:, 4:] == 1.0).all()  # transparent -> white

    Image.fromarray(rgb).convert("P").save(tmp_path / "p.bmp")
    assert read_image(tmp_path / "p.bmp").shape == (7, 9, 3)
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    jpg = read_image(tmp_path / "c.jpg")
    assert jpg.shape == (7, 9, 3) and jpg.dtype == np.float32 and 0 <= jpg.min() and jpg.max() <= 1


@pytest.mark.parametrize("case", ["text", "empty", "cut_png", "cut_jpeg", "missing"])
def test_unreadable_images_are_refused_by_name(tmp_path: Path, case: str) -> None:
    from hypercut.data.io import ImageReadError, read_image

    path = tmp_path / ("img.jpg" if case == "cut_jpeg" else "img.png")
    if case == "text":
        path.write_text("this is not an image")
    elif case == "empty":
        path.write_bytes(b"")
    elif case.startswith("cut"):
        _photo(path, quality=90) if case == "cut_jpeg" else _photo(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(ImageReadError, match=re.escape(str(path))):
        read_image(path)


class _Repeat(torch.nn.Module):
    """A "deblurring" net returning three copies of its input."""

    def forward(self, blurry: torch.Tensor) -> torch.Tensor:
        return blurry.unsqueeze(1).repeat(1, 3, 1, 1, 1)


def test_training_and_inference_read_the_same_pixels(tmp_path: Path) -> None:
    from hypercut.data.datasets import ImageFolderDataset

    rgba = np.random.default_rng(0).integers(0, 256, (8, 10, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    _photo(tmp_path / "rot.jpg", size=(16, 24), quality=95, exif=_exif_orientation(6))
    dataset = ImageFolderDataset(tmp_path)
    report = infer(_Repeat(), [tmp_path], tmp_path / "out", formats=["png"], progress=False)
    assert len(report.processed) == 2
    for index, stem in enumerate(["a", "rot"]):
        trained_on = np.round(dataset[index]["blurry"].numpy().transpose(1, 2, 0) * 255)
        inferred = np.asarray(Image.open(tmp_path / "out" / stem / "frame_001.png"))
        np.testing.assert_array_equal(trained_on, inferred)
    over_white = np.round(rgba[..., :3] * (rgba[..., 3:] / 255) + 255 * (1 - rgba[..., 3:] / 255))
    np.testing.assert_allclose(np.asarray(Image.open(tmp_path / "out" / "a" / "frame_001.png")), over_white, atol=1)
    assert tuple(dataset[1]["blurry"].shape) == (3, 24, 16)  # EXIF orientation 6 applied, as a viewer shows it


def _exif_orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path: Path, orientation: int, suffix: str) -> None:
    from hypercut.data.io import image_size, read_image_raw

    path = tmp_path / f"o{suffix}"
    _photo(path, size=(16, 24), exif=_exif_orientation(orientation))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    np.testing.assert_array_equal(read_image_raw(path), expected)
    assert image_size(path) == expected.shape[:2]


def test_one_suffix_list_and_natural_order(tmp_path: Path) -> None:
    from hypercut.data.io import list_images

    for name in ["10.png", "2.PNG", "1.webp", "c.txt", ".hidden.png", "3.TIFF"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["1.webp", "2.PNG", "3.TIFF", "10.png"]
    files, problems = expand_inputs([tmp_path])
    assert [p.name for p in files] == names and not problems


# ------------------------------------------------------------------------------------------- validate
def _metadata(root: Path) -> dict:
    return json.loads((root / "metadata.json").read_text())


def test_validate_reads_headers_and_reports_every_problem(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hypercut.cli import data_main

    meta = _metadata(tiny_dataset)
    (tiny_dataset / "00000" / "sharp" / "001.png").write_bytes(b"")
    (tiny_dataset / "00000" / "sharp" / "002.png").write_text("not an image")
    cut = tiny_dataset / "00000" / "sharp" / "003.png"
    cut.write_bytes(cut.read_bytes()[:-40])
    Image.fromarray(np.zeros((16, 40, 3), np.uint8)).save(tiny_dataset / "00000" / "sharp" / "004.png")
    outside = tmp_path / "outside.png"
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(outside)
    (tiny_dataset / "00000" / "sharp" / "005.png").unlink()
    (tiny_dataset / "00000" / "sharp" / "005.png").symlink_to(outside)
    jpeg = tiny_dataset / "00001" / "blur.jpg"
    _photo(jpeg, size=(32, 40), quality=90)
    jpeg.write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) * 6 // 10])
    meta["data"][1]["blur_path"] = "00001/blur.jpg"
    meta["data"][2]["order"] = "sideways"  # a schema error ...
    meta["data"][2]["frame002_path"] = "../elsewhere.png"  # ... does not hide the path errors
    meta["data"][2]["frame003_path"] = "00002/sharp/missing.png"
    (tiny_dataset / "metadata.json").write_text(json.dumps(meta))

    assert data_main(["validate", str(tiny_dataset)]) == 1
    out = capsys.readouterr().out
    expected = [
        "data[0].frame001_path: ",
        "data[0].frame002_path: ",
        "data[0].frame003_path: ",
        "data[0].frame004_path: size 16x40 of 00000/sharp/004.png differs from 00000/blur.png (32x40)",
        "data[0].frame005_path: leaves the dataset root through a symlink",
        "data[1].blur_path: ",
        "data[2].order: unknown order 'sideways'",
        "data[2].frame002_path: path escapes the dataset root",
        "data[2].frame003_path: file not found: 00002/sharp/missing.png",
    ]
    for text in expected:
        assert text in out, (text, out)
    assert "truncated PNG" in out
    assert len(out.strip().splitlines()) == len(expected)


def test_full_validation_decodes_and_training_never_reads_a_cut_jpeg(tiny_dataset: Path) -> None:
    from hypercut.data import BlurSequenceDataset, validate_dataset
    from hypercut.data.io import ImageReadError

    meta = _metadata(tiny_dataset)
    jpeg = tiny_dataset / "00000" / "blur.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(jpeg, quality=100)  # mostly pixel data: the cut leaves the header whole
    jpeg.write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) * 6 // 10])
    meta["data"][0]["blur_path"] = "00000/blur.jpg"
    (tiny_dataset / "metadata.json").write_text(json.dumps(meta))
    corrupt = tiny_dataset / "00001" / "sharp" / "003.png"
    data = bytearray(corrupt.read_bytes())
    data[60:120] = bytes(60)  # pixel data corrupted; header and end marker intact
    corrupt.write_bytes(bytes(data))

    (cut,) = validate_dataset(tiny_dataset)
    assert cut.startswith("metadata.json: data[0].blur_path: ") and "truncated JPEG" in cut
    problems = validate_dataset(tiny_dataset, check="full")
    assert problems[0] == cut and problems[1].startswith("metadata.json: data[1].frame003_path: ")
    assert len(problems) == 2 and "003.png: cannot decode image" in problems[1]
    with pytest.raises(ImageReadError, match="blur.jpg"):
        BlurSequenceDataset(tiny_dataset, split="train")[0]


# ------------------------------------------------------------------------------------------- packed store
def test_pack_refuses_a_stale_store(tiny_dataset: Path) -> None:
    from hypercut.data.packed import PackedSequenceDataset, find_packed, pack_dataset

    out = pack_dataset(tiny_dataset, splits=["train"], show_progress=False)
    PackedSequenceDataset(out, "train")
    (out / "ordinary").write_text("")  # the store gets a new file's usual permissions
    assert {(out / name).stat().st_mode for name in ("train.npy", "train.json")} == {(out / "ordinary").stat().st_mode}
    frame = tiny_dataset / "00000" / "sharp" / "002.png"
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(frame)
    os.utime(frame, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(ValueError, match=r"stale: .*002.png changed since packing.*re-pack"):
        PackedSequenceDataset(out, "train")
    folder, reason = find_packed(tiny_dataset, "train")
    assert folder is None and "re-pack" in reason


def test_pack_with_an_undecodable_image_names_it_and_leaves_no_file(tiny_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hypercut.cli import data_main

    frame = tiny_dataset / "00000" / "sharp" / "003.png"
    data = bytearray(frame.read_bytes())
    data[60:120] = bytes(60)  # pixel data corrupted; header and end marker intact
    frame.write_bytes(bytes(data))
    assert data_main(["pack", str(tiny_dataset), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "data[0].frame003_path" in err and "003.png" in err and "Traceback" not in err
    assert [p.name for p in (tiny_dataset / "packed").iterdir() if p.name != ".pack.lock"] == []


_PACK_WHEN_TOLD = """
import sys, time
from pathlib import Path
from hypercut.cli import data_main
import hypercut.data.packed
Path(sys.argv[3]).touch()
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
sys.exit(data_main(["pack", sys.argv[1], "--quiet"]))
"""


def test_two_concurrent_packs_do_not_corrupt_the_store(make_tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from hypercut.data.packed import PackedSequenceDataset

    root = make_tiny_dataset("big", num_samples=12, size=(192, 256), partitions=["train"] * 12)
    go = tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [
        subprocess.Popen([sys.executable, "-c", _PACK_WHEN_TOLD, str(root), str(go), str(flag)], env=env, stderr=subprocess.PIPE, text=True)
        for flag in ready
    ]
    deadline = time.monotonic() + 120
    while not all(flag.exists() for flag in ready):  # both have imported hypercut and wait
        assert time.monotonic() < deadline and all(proc.poll() is None for proc in procs)
        time.sleep(0.05)
    go.touch()
    results = [(proc.wait(timeout=120), proc.stderr.read() if proc.stderr else "") for proc in procs]
    assert sorted(rc for rc, _ in results) in ([0, 0], [0, 1]), results
    assert all("already packing" in err for rc, err in results if rc == 1), results
    packed = PackedSequenceDataset(root / "packed", "train")
    assert len(packed) == 12 and packed.array.shape == (12, 8, 192, 256, 3)
    assert sorted(p.name for p in (root / "packed").iterdir()) == [".pack.lock", "train.json", "train.npy"]

    from hypercut.data.packed import _pack_lock

    with _pack_lock(root / "packed"), pytest.raises(BlockingIOError, match="already packing"):
        with _pack_lock(root / "packed"):
            pass


# ------------------------------------------------------------------------------------------- outputs
def test_infer_refuses_an_earlier_run_unless_overwrite(tmp_path: Path) -> None:
    class Frames(torch.nn.Module):
        def __init__(self, count: int) -> None:
            super().__init__()
            self.count = count

        def forward(self, blurry: torch.Tensor) -> torch.Tensor:
            return blurry.unsqueeze(1).repeat(1, self.count, 1, 1, 1)

    image = tmp_path / "photo.png"
    _photo(image, size=(16, 24))
    out = tmp_path / "out"
    infer(Frames(7), [image], out, formats=["png", "gif"], progress=False)
    assert len(list((out / "photo").glob("frame_*.png"))) == 7
    with pytest.raises(FileExistsError, match=r"photo.*overwrite=true"):
        infer(Frames(3), [image], out, formats=["png"], progress=False)
    assert len(list((out / "photo").glob("frame_*.png"))) == 7
    infer(Frames(3), [image], out, formats=["png"], progress=False, overwrite=True)
    assert sorted(p.name for p in (out / "photo").iterdir()) == ["frame_001.png", "frame_002.png", "frame_003.png"]


def test_label_order_refuses_an_existing_output(tiny_dataset: Path, tmp_path: Path) -> None:
    from hypercut.ordering import Hyperplane, OrderingModel, PairEncoder

    spec = {
        "_target_": "hypercut.ordering.OrderingModel",
        "encoder": {"_target_": "hypercut.ordering.PairEncoder", "width": 8, "dims": [8], "num_res_blocks": 1, "out_dim": 8},
        "hyperplane": {"_target_": "hypercut.ordering.Hyperplane", "dim": 8, "seed": 0},
    }
    model = OrderingModel(PairEncoder(width=8, dims=(8,), num_res_blocks=1, out_dim=8), Hyperplane(8, seed=0))
    weights = save_weights(model, tmp_path / "ordering.pt", spec)
    existing = tiny_dataset / "metadata_ordered.json"
    existing.write_text("keep me")
    overrides = [f"data.root={tiny_dataset}", f"ordering_weights={weights}"]
    with pytest.raises(FileExistsError, match=r"metadata_ordered.json.*overwrite=true"):
        tasks.label_order(tasks.compose("label_order", overrides, output_dir=tmp_path))
    assert existing.read_text() == "keep me"
    stats = tasks.label_order(tasks.compose("label_order", [*overrides, "overwrite=true"], output_dir=tmp_path))
    assert stats["samples"] == 6 and json.loads(existing.read_text())["data"]


def test_header_check_accepts_data_after_a_jpeg_and_sees_a_cut_progressive_one(tmp_path: Path) -> None:
    from hypercut.data.io import ImageReadError, read_header, read_image

    motion = tmp_path / "motion.jpg"
    _photo(motion, quality=90, exif=_exif_orientation(1))
    motion.write_bytes(motion.read_bytes() + b"\xff\xda" + bytes(range(256)) * 400)  # e.g. an appended video
    assert read_header(motion).width == 96 and read_image(motion).shape == (128, 96, 3)
    progressive = tmp_path / "progressive.jpg"
    _photo(progressive, quality=90, progressive=True)
    progressive.write_bytes(progressive.read_bytes()[:-300])
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read_header(progressive)


# ------------------------------------------------------------------------------------------- dependencies
SRC = Path(__file__).resolve().parents[1] / "src" / "hypercut"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _declared() -> tuple[dict[str, str], set[str]]:
    """``(required, every declared distribution)``: names normalised, required with its specifier."""
    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    project = tomllib.loads(PYPROJECT.read_text())["project"]
    required = {Requirement(r).name.lower().replace("_", "-"): str(Requirement(r).specifier) for r in project["dependencies"]}
    extras = {Requirement(r).name.lower().replace("_", "-") for reqs in project["optional-dependencies"].values() for r in reqs}
    return required, set(required) | extras


def test_torch_refuses_pickles_by_default_and_every_load_says_weights_only() -> None:
    from packaging.specifiers import SpecifierSet

    required, _ = _declared()
    assert "2.5.1" not in SpecifierSet(required["torch"]) and "2.6.0" in SpecifierSet(required["torch"])
    missing = []
    for path in [*SRC.rglob("*.py"), *Path(__file__).parent.glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                if keywords.get("weights_only") != "True":
                    missing.append(f"{path.name}:{node.lineno}")
    assert missing == []


def _unguarded_imports(tree: ast.AST) -> list[str]:
    """Top-level module names imported outside ``try: ... except ImportError`` (optional probes)."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            h.type is not None and "ImportError" in ast.unparse(h.type) for h in node.handlers
        ):
            guarded.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    names = []
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module.split(".")[0])
    return names


def test_every_imported_package_is_declared() -> None:
    import importlib.metadata

    providers = importlib.metadata.packages_distributions()
    _, declared = _declared()
    undeclared = set()
    for path in SRC.rglob("*.py"):
        for top in set(_unguarded_imports(ast.parse(path.read_text()))) - set(sys.stdlib_module_names) - {"hypercut"}:
            if not {d.lower().replace("_", "-") for d in providers.get(top, [])} & declared:
                undeclared.add(f"{top} ({path.name})")
    assert sorted(undeclared) == []

"""The training system: configs compose and instantiate, both modules run through Hydra, resume,
export, evaluation, labelling, the CLI and multirun."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hypercut import tasks
from hypercut.export import load_pretrained, read_weights, save_weights
from hypercut.ordering import Hyperplane, OrderingModel, PairEncoder

CONF = Path(tasks.__file__).parent / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
TINY_ENCODER = ["model/encoder=small", "model.encoder.width=8", "model.encoder.dims=[8,8]", "model.encoder.num_res_blocks=1", "model.encoder.out_dim=8"]


def _deblur(root: Path, out: Path, logger: str = "csv") -> list[str]:
    return [*_common(root, out, logger), "model/net=tiny"]


def _common(root: Path, out: Path, logger: str = "csv") -> list[str]:
    return [
        f"paths.root_dir={out}",
        "data=folder",
        f"data.root={root}",
        "data.batch_size=2",
        "data.crop_size=32",
        f"logger={logger}",
        "trainer.log_every_n_steps=1",
    ]


@pytest.fixture
def ordering_weights(tmp_path: Path) -> Path:
    """A (random) tiny ordering model saved as a weights file."""
    spec = {
        "_target_": "hypercut.ordering.OrderingModel",
        "encoder": {"_target_": "hypercut.ordering.PairEncoder", "width": 8, "dims": [8, 8], "num_res_blocks": 1, "out_dim": 8},
        "hyperplane": {"_target_": "hypercut.ordering.Hyperplane", "dim": 8, "seed": 0},
        "antisymmetric": True,
    }
    model = OrderingModel(PairEncoder(width=8, dims=(8, 8), num_res_blocks=1, out_dim=8), Hyperplane(8, seed=0))
    return save_weights(model, tmp_path / "ordering.pt", spec)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(experiment: str, tiny_dataset: Path, tmp_path: Path, ordering_weights: Path) -> None:
    cfg = tasks.compose(
        "train", [f"experiment={experiment}", f"ordering_weights={ordering_weights}"], output_dir=tmp_path / "run"
    )
    if "root" in cfg.data:  # a dataset on disk (data=natural renders its scenes and has none)
        cfg.data.root = str(tiny_dataset)
    OmegaConf.resolve(cfg)
    module = tasks.build_module(cfg)
    assert sum(p.numel() for p in module.parameters()) > 0
    assert instantiate(cfg.data) is not None
    trainer = instantiate(cfg.trainer, logger=False, callbacks=tasks.build_callbacks(cfg))
    assert trainer.max_steps == cfg.trainer.max_steps
    assert trainer.checkpoint_callback.monitor == cfg.optimized_metric


@pytest.mark.parametrize("config_name", ["train", "eval", "label_order", "infer", "export"])
def test_top_level_configs_require_what_their_usage_line_says(config_name: str, tmp_path: Path) -> None:
    """The values left `???` are exactly the `key=` of the config's first line outside [brackets]."""
    usage = (CONF / f"{config_name}.yaml").read_text().splitlines()[0]
    required = set(re.findall(r"([\w.]+)=", re.sub(r"\[[^\]]*\]", "", usage)))
    cfg = tasks.compose(config_name, output_dir=tmp_path)
    assert set(OmegaConf.missing_keys(cfg)) == required, usage


def test_hypercut_loss_without_ordering_weights_says_what_to_do(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = tasks.compose("train", [f"data.root={tiny_dataset}"], output_dir=tmp_path)
    with pytest.raises(ValueError, match="ordering_weights=PATH"):
        tasks.build_module(cfg)


def test_fast_dev_run_ordering(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = tasks.compose(
        "train", [*_common(tiny_dataset, tmp_path), "experiment=ordering", "debug=fdr", *TINY_ENCODER], output_dir=tmp_path / "o"
    )
    tasks.train(cfg)
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert "train/loss" in metrics and "val/con2" in metrics


def test_fast_dev_run_deblur_hypercut(tiny_dataset: Path, tmp_path: Path, ordering_weights: Path) -> None:
    cfg = tasks.compose(
        "train", [*_deblur(tiny_dataset, tmp_path), "debug=fdr", f"ordering_weights={ordering_weights}"], output_dir=tmp_path / "d"
    )
    tasks.train(cfg)
    metrics = json.loads((tmp_path / "d" / "metrics.json").read_text())
    for key in ("train/loss", "train/reg", "val/ppsnr", "val/ppsnr_f1", "val/identity_ppsnr", "val/pred_con2", "test/pssim"):
        assert key in metrics, key
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def _deblur_run(root: Path, out: Path, steps: int, extra: list[str] = ()) -> Path:  # type: ignore[assignment]
    cfg = tasks.compose(
        "train",
        [
            *_deblur(root, out.parent),
            "model/loss=naive",
            f"trainer.max_steps={steps}",
            "+trainer.limit_val_batches=1",
            "model.scheduler.warmup_steps=2",
            "data.hflip=false",
            *extra,
        ],
        output_dir=out,
    )
    tasks.train(cfg)
    return out


def test_train_export_evaluate_infer(tiny_dataset: Path, tmp_path: Path, ordering_weights: Path) -> None:
    run = _deblur_run(tiny_dataset, tmp_path / "run", steps=3)
    weights = run / "weights.pt"
    payload = read_weights(weights)
    assert payload["spec"]["_target_"] == "hypercut.models.MultiFrameUNet"
    assert "val/ppsnr" in payload["metrics"]

    # The checkpoint converts into the same weights.
    exported = tasks.export(tasks.compose("export", [f"ckpt={run / 'checkpoints' / 'best.ckpt'}", f"out={tmp_path / 'e.pt'}"], output_dir=tmp_path))
    x = torch.rand(1, 3, 32, 40)
    assert torch.equal(load_pretrained(weights)(x), load_pretrained(exported)(x))

    metrics = tasks.evaluate(
        tasks.compose("eval", [f"data.root={tiny_dataset}", f"weights={weights}", f"ordering_weights={ordering_weights}"], output_dir=tmp_path / "eval")
    )
    assert {"test/ppsnr_f7", "test/identity_ppsnr", "test/pred_con3"} <= set(metrics)
    table = (tmp_path / "eval" / "results.md").read_text()
    assert "| 7 |" in table and "identity_ppsnr" in table
    assert (tmp_path / "eval" / "results.csv").read_text().count("\n") == 1 + 7 + 1  # header, 7 frames, mean

    blurry = sorted(tiny_dataset.glob("*/blur.png"))[:2]
    report = tasks.infer(tasks.compose("infer", [f"weights={weights}", f"inputs=[{blurry[0]},{blurry[1]}]", "formats=[png,gif]"], output_dir=tmp_path / "vid"))
    assert not report.failed and len(list((tmp_path / "vid").rglob("*.gif"))) == 2


def test_label_order_writes_new_metadata(tiny_dataset: Path, tmp_path: Path, ordering_weights: Path) -> None:
    before = (tiny_dataset / "metadata.json").read_text()
    stats = tasks.label_order(
        tasks.compose("label_order", [f"data.root={tiny_dataset}", f"ordering_weights={ordering_weights}"], output_dir=tmp_path)
    )
    assert (tiny_dataset / "metadata.json").read_text() == before
    labelled = json.loads(Path(stats["output"]).read_text())["data"]
    assert len(labelled) == stats["samples"] == 6
    assert sum(d["order"] == "reverse" for d in labelled) == stats["reversed"]
    assert {d["order"] for d in labelled} <= {"keep", "reverse"}
    with pytest.raises(FileExistsError):
        tasks.label_order(
            tasks.compose("label_order", [f"data.root={tiny_dataset}", f"ordering_weights={ordering_weights}", "output=metadata.json"], output_dir=tmp_path)
        )


def test_resume_continues_exactly(make_tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = make_tiny_dataset("resume", num_samples=12, partitions=["train"] * 8 + ["val"] * 2 + ["test"] * 2)
    # 8 train samples / batch 2 = 4 steps per epoch: stop after epoch 1, resume to the end of epoch 2.
    straight = _deblur_run(root, tmp_path / "straight", steps=8, extra=["data.hflip=true"])
    # The same run stopped after its first epoch (the schedule still planned for 8 steps), then resumed.
    interrupted = _deblur_run(root, tmp_path / "resumed", steps=8, extra=["data.hflip=true", "trainer.max_epochs=1"])
    assert torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    _deblur_run(root, interrupted, steps=8, extra=["data.hflip=true", "ckpt_path=last"])
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=True)
    assert (a["global_step"], b["global_step"]) == (8, 8)
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)


def test_ema_is_exported_and_a_resume_keeps_both_weights(make_tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """callbacks=ema: best.ckpt and weights.pt hold the average; last.ckpt resumes raw weights and average."""
    root = make_tiny_dataset("ema", num_samples=12, partitions=["train"] * 8 + ["val"] * 2 + ["test"] * 2)
    ema = ["callbacks=ema", "callbacks.ema.decay=0.5", "data.hflip=true"]
    straight = _deblur_run(root, tmp_path / "straight", steps=8, extra=ema)
    interrupted = _deblur_run(root, tmp_path / "resumed", steps=8, extra=[*ema, "trainer.max_epochs=1"])
    _deblur_run(root, interrupted, steps=8, extra=[*ema, "ckpt_path=last"])
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=True)
    assert (a["global_step"], b["global_step"]) == (8, 8)
    assert int(a["averaging_state"]["n_averaged"]) == int(b["averaging_state"]["n_averaged"]) == 8
    for part in ("state_dict", "current_model_state"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, rtol=0, atol=1e-6, msg=f"{part} {key}")
    key = "net.head.weight"
    assert not torch.equal(a["state_dict"][key], a["current_model_state"][key])  # the average is not the raw net
    best = torch.load(straight / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    exported = read_weights(straight / "weights.pt")["state_dict"]
    assert torch.equal(exported["head.weight"], best[key])


def test_non_finite_loss_stops_with_step_and_ids() -> None:
    from hypercut.lit import DeblurLitModule
    from hypercut.losses import NaiveLoss

    class NaNNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(float("nan")))

        def forward(self, blurry: torch.Tensor) -> torch.Tensor:
            return (blurry * self.scale).unsqueeze(1).expand(-1, 7, -1, -1, -1)

    module = DeblurLitModule(net=NaNNet(), loss=NaiveLoss())
    batch = {"blurry": torch.rand(2, 3, 16, 16), "sharp": torch.rand(2, 7, 3, 16, 16), "id": ["a/1", "b/2"]}
    with pytest.raises(FloatingPointError, match=r"step 0, batch 3, sample ids \['a/1', 'b/2'\]"):
        module.training_step(batch, 3)


def _cli(command: str, args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run an installed console script (``hypercut-train`` ...) of this environment."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    script = Path(sys.executable).parent / command
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_wandb_logger_offline_without_network(tiny_dataset: Path, tmp_path: Path, ordering_weights: Path) -> None:
    """The default logger: W&B, offline, even with an API key set (it must not try to log in)."""
    env_key = os.environ.get("WANDB_API_KEY")
    os.environ["WANDB_API_KEY"] = "x" * 40
    try:
        cfg = tasks.compose(
            "train", [*_deblur(tiny_dataset, tmp_path, logger="wandb"), "debug=fdr", f"ordering_weights={ordering_weights}"], output_dir=tmp_path / "w"
        )
        cfg.logger = tasks.compose("train", output_dir=tmp_path).logger  # debug=fdr switches to csv
        tasks.train(cfg)
    finally:
        if env_key is None:
            os.environ.pop("WANDB_API_KEY", None)
        else:
            os.environ["WANDB_API_KEY"] = env_key
    assert list((tmp_path / "w" / "wandb").glob("offline-run-*"))


@pytest.mark.parametrize("mode", ["RUN", "MULTIRUN"])
def test_wandb_group_is_the_multirun_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """The W&B runs of one multirun share a group named after the sweep folder; a single run has none."""
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = tmp_path / "multirun_2026-01-01_00-00-00"
    with initialize_config_module(config_module="hypercut.conf", version_base="1.3"):
        cfg = compose("train", ["logger=wandb", f"hydra.sweep.dir={sweep}"], return_hydra_config=True)
    OmegaConf.set_readonly(cfg.hydra, False)
    cfg.hydra.mode = RunMode[mode]
    cfg.paths.output_dir = str(tmp_path / "job0")
    HydraConfig.instance().set_config(cfg)
    try:
        (logger,) = [lg for lg in tasks.build_loggers(cfg) if isinstance(lg, WandbLogger)]
        run = logger.experiment  # an offline run: wandb.init with the logger's arguments
        group = run.group
        run.finish()
    finally:
        HydraConfig.instance().cfg = None
    assert group == (sweep.name if mode == "MULTIRUN" else "")


def test_ddp_two_cpu_ranks_match_one_rank(tiny_dataset: Path, tmp_path: Path) -> None:
    """2 DDP ranks (gloo) in a subprocess give the same test metrics as 1 rank."""
    weights = _deblur_run(tiny_dataset, tmp_path / "w", steps=2) / "weights.pt"
    results = {}
    for devices in (1, 2):
        out = tmp_path / f"ddp{devices}"
        result = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "ddp_eval_worker.py"), str(tiny_dataset), str(weights), str(out), str(devices)],
            capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        results[devices] = json.loads((out / "metrics.json").read_text())
    assert results[1].keys() == results[2].keys()
    for key, value in results[1].items():
        assert results[2][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_metric_states_reset_under_inference_mode_stay_updatable() -> None:
    """Trainer.validate (inference mode) before fit must not break the metrics used in training."""
    from hypercut.metrics import OrderingMetrics, VideoMetrics

    u = torch.randn(4, 3)
    pred, target = torch.rand(2, 7, 3, 16, 16), torch.rand(2, 7, 3, 16, 16)
    ordering, video = OrderingMetrics(3), VideoMetrics(7, data_range=1.0)
    with torch.inference_mode():
        ordering.update(u, -u)
        video.update(pred, target)
        ordering.compute(), video.compute()
        ordering.reset(), video.reset()
    ordering.update(u, -u)
    video.update(pred, target)
    assert ordering.compute()["hit"] == 1.0
    assert video.compute()["psnr"] > 0


def test_synthetic_data_is_made_on_first_use_and_best_checkpoint_reloads(tmp_path: Path) -> None:
    """data=synth synthesises into paths.data_dir; list-valued config (size) stays checkpoint-safe."""
    cfg = tasks.compose(
        "train",
        [
            f"paths.root_dir={tmp_path}",
            "data.num_samples=12",
            "data.size=[32,32]",
            "data.crop_size=32",
            "data.batch_size=4",
            "logger=csv",
            "model/net=tiny",
            "model/loss=naive",
            "trainer.max_steps=2",
            "model.scheduler.warmup_steps=1",
        ],
        output_dir=tmp_path / "run",
    )
    assert tasks.train(cfg) is not None  # val/ppsnr, read back from the best checkpoint's run
    assert (tmp_path / "data" / "synth_32px_12" / "metadata.json").is_file()
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    assert ckpt["datamodule_hyper_parameters"]["size"] == [32, 32]


def test_main_job_quick_runs_every_stage(tmp_path: Path) -> None:
    """`make train`'s pipeline with tiny settings: every stage runs and leaves its outputs."""
    from hypercut import demo

    summary = demo.run(tmp_path / "demo", quick=True)
    out = tmp_path / "demo"
    assert (out / "ordering" / "weights.pt").is_file() and (out / "deblur" / "weights.pt").is_file()
    assert (out / "data" / "metadata_ordered.json").is_file()
    assert "| mean |" in (out / "eval" / "results.md").read_text()
    assert len(list((out / "videos").glob("*.mp4"))) >= 1
    assert summary["label_order"]["samples"] == demo.QUICK["num_samples"]  # type: ignore[index]
    assert "test/ppsnr" in summary["test"]  # type: ignore[operator]


@pytest.mark.parametrize("override", ["hydra/launcher=submitit_slurm", "hydra/launcher=submitit_local"])
def test_cluster_launchers_compose(override: str) -> None:
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="hypercut.conf", version_base="1.3"):
        cfg = compose("train", overrides=[override], return_hydra_config=True)
    assert "submitit_launcher" in cfg.hydra.launcher._target_


def test_optuna_sweep_two_trials_through_the_cli(tiny_dataset: Path, tmp_path: Path, ordering_weights: Path) -> None:
    """hparams_search=optuna: two trials run and Optuna records the metric `train` returned."""
    result = _cli(
        "hypercut-train",
        [
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            *_deblur(tiny_dataset, tmp_path),
            "debug=fdr",
            f"ordering_weights={ordering_weights}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    best = sorted((tmp_path / "runs" / "debug").glob("multirun_*/optimization_results.yaml"))
    assert best, result.stdout[-2000:]
    assert "best_value" in best[0].read_text()


def test_ordering_run_reports_the_metrics_of_the_weights_it_exports(tmp_path: Path) -> None:
    """weights.pt holds the best validation's network: metrics.json gives that network's val scores."""
    cfg = tasks.compose(
        "train",
        [
            "experiment=ordering_study", *TINY_ENCODER, "data.sources=[skimage]", "data.crop_size=32",
            "data.eval_size=32", "data.num_val=32", "data.batch_size=4", "trainer.max_steps=12",
            "trainer.val_check_interval=2", "trainer.max_time=null", "model.optimizer.lr=0.05", "logger=csv",
            "+trainer.enable_progress_bar=false",
        ],
        output_dir=tmp_path / "o",
    )  # fmt: skip
    tasks.train(cfg)
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    best = torch.load(tmp_path / "o" / "checkpoints" / "best.ckpt", weights_only=True)
    (state,) = [v for k, v in best["callbacks"].items() if k.startswith("ModelCheckpoint") and v.get("monitor")]
    with (tmp_path / "o" / "csv" / "metrics.csv").open() as f:
        rows = [row for row in csv.DictReader(f) if row.get("val/con3")]
    # step 0: the untrained network; step 12: the exported weights, validated again after the fit
    during = [float(row["val/con3"]) for row in rows if 0 < int(row["step"]) < 12]
    assert len(during) == 6 and during[-1] < max(during)  # the last validation is not the best one
    assert metrics["val/con3"] == pytest.approx(float(state["best_model_score"])) == pytest.approx(max(during))

"""The jobs behind the command-line tools, as plain functions of a Hydra config.

``train``, ``evaluate``, ``label_order``, ``infer`` and ``export`` each take a composed
:class:`omegaconf.DictConfig` (see ``conf/``) and return their result, so tests, notebooks and sweeps
call them directly; ``hypercut.cli`` only wraps them with ``@hydra.main``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import signal
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from hypercut.export import build_from_spec, load_pretrained, save_weights
from hypercut.models import load_with_new_blocks

if TYPE_CHECKING:  # Lightning is imported by the jobs that train or evaluate, not by `infer`/`export`
    from lightning.pytorch import Callback, LightningModule
    from lightning.pytorch.loggers import Logger

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A mistake in the composed config, fixed on the command line; the CLI prints it as one line."""


def configure_environment() -> None:
    """Process defaults for a job: W&B quiet, no albumentations update check over the network."""
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def wandb_offline_by_default() -> bool:
    """Whether W&B runs offline: only when the user has configured W&B neither way.

    W&B is configured by ``WANDB_MODE`` or by one of its settings files: the workspace one
    (``$WANDB_DIR/wandb/settings``, ``./wandb/settings`` by default, written by ``wandb offline`` and
    ``wandb online``) or the global one (``$WANDB_CONFIG_DIR/settings``, ``~/.config/wandb/settings``).
    Then W&B decides, as it would without hypercut; otherwise runs stay on disk (``wandb sync``).
    """
    if os.environ.get("WANDB_MODE"):
        return False
    workspace = Path(os.environ.get("WANDB_DIR") or ".")
    config_dir = Path(os.environ.get("WANDB_CONFIG_DIR") or "~/.config/wandb").expanduser()
    files = [workspace / "wandb" / "settings", workspace / ".wandb" / "settings", config_dir / "settings"]
    return not any(f.is_file() for f in files)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's console noise off for the duration: what a hypercut run prints once, or not at all.

    - Under Hydra (or any handler on the root logger) the ``lightning`` logger's own console handler is
      removed, so its INFO lines are not printed twice;
    - the litlogger advertisement is dropped;
    - "Found N module(s) in eval mode" is silenced: the frozen ordering model is in eval mode by
      design;
    - the deprecation of ``LeafSpec`` that Lightning's own ``_pytree`` triggers with recent torch.
    """
    import lightning  # noqa: F401  (adds the console handler that is removed here)

    lightning_logger = logging.getLogger("lightning")
    if logging.getLogger().handlers:
        for handler in list(lightning_logger.handlers):
            if type(handler) is logging.StreamHandler:
                lightning_logger.removeHandler(handler)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    no_tip = _DropMessages("litlogger")
    rank_zero.addFilter(no_tip)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            yield
    finally:
        rank_zero.removeFilter(no_tip)


class _DropMessages(logging.Filter):
    """Drops the log records whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def make(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that passes plain lists and dicts, never ``ListConfig``/``DictConfig``.

    Hyper-parameters saved in checkpoints then stay readable with ``torch.load(weights_only=True)``.
    """
    return instantiate(node, _convert_="all", **kwargs)


def output_dir(cfg: DictConfig) -> Path:
    """The run's folder (``paths.output_dir``), created if needed."""
    path = Path(cfg.paths.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------- build
def build_module(cfg: DictConfig) -> LightningModule:
    """The LightningModule described by ``cfg.model`` (``kind: deblur`` or ``kind: ordering``)."""
    kind = cfg.model.get("kind")
    if kind == "deblur":
        return _build_deblur(cfg)
    if kind == "ordering":
        return _build_ordering(cfg)
    raise ConfigError(f"model.kind: expected 'deblur' or 'ordering', got {kind!r}")


def _build_ordering(cfg: DictConfig) -> LightningModule:
    from hypercut.lit import OrderingLitModule
    from hypercut.ordering import OrderingModel

    m = cfg.model
    spec = {
        "_target_": "hypercut.ordering.OrderingModel",
        "encoder": OmegaConf.to_container(m.encoder, resolve=True),
        "hyperplane": OmegaConf.to_container(m.hyperplane, resolve=True),
        "antisymmetric": bool(m.antisymmetric),
    }
    return OrderingLitModule(
        net=cast(OrderingModel, build_from_spec(spec)),  # the spec's _target_ is OrderingModel
        loss=make(m.loss),
        optimizer=make(m.optimizer) if m.get("optimizer") else None,
        scheduler=make(m.scheduler) if m.get("scheduler") else None,
        scheduler_interval=m.get("scheduler_interval", "epoch"),
        num_frames=cfg.num_frames,
        net_spec=spec,
    )


def _build_deblur(cfg: DictConfig) -> LightningModule:
    from hypercut.lit import DeblurLitModule

    m = cfg.model
    loss = make(m.loss)
    canonicalizer = None
    if cfg.get("ordering_weights"):
        canonicalizer = make(m.canonicalizer, model=_ordering_model(cfg.ordering_weights))
    elif getattr(loss, "needs_canonicalizer", False):
        raise ConfigError(
            f"model/loss={m.loss._target_.rsplit('.', 1)[-1]} needs a trained ordering model: add "
            "ordering_weights=PATH (from `hypercut-train experiment=ordering`), or "
            "ordering_weights=untrained for a smoke run, or use model/loss=naive"
        )
    return DeblurLitModule(
        net=_initial_net(cfg),
        loss=loss,
        canonicalizer=canonicalizer,
        optimizer=make(m.optimizer) if m.get("optimizer") else None,
        scheduler=make(m.scheduler) if m.get("scheduler") else None,
        scheduler_interval=m.get("scheduler_interval", "epoch"),
        num_frames=cfg.num_frames,
        net_spec=dict(OmegaConf.to_container(m.net, resolve=True)),  # type: ignore[arg-type]
    )


def _initial_net(cfg: DictConfig) -> torch.nn.Module:
    """``model.net``, starting from the weights of ``init_weights`` (a file or a zoo name) when set.

    ``model.net`` may have more NAFNet blocks per level than those weights: the new blocks start as the
    identity, so a deeper network starts from the source's quality (see ``load_with_new_blocks``).
    """
    net = make(cfg.model.net)
    init = cfg.get("init_weights")
    if init:
        source = load_pretrained(init)
        if type(source) is not type(net):
            raise ConfigError(
                f"init_weights={init}: holds a {type(source).__name__}, but model/net builds a {type(net).__name__}"
            )
        try:
            new_blocks = load_with_new_blocks(net, source.state_dict())
        except RuntimeError as err:
            raise ConfigError(f"init_weights={init}: does not fit model/net ({err})") from err
        if new_blocks:
            log.info("init_weights=%s: %d new blocks start as the identity: %s", init, len(new_blocks), new_blocks)
    return net


UNTRAINED = "untrained"
"""``ordering_weights=untrained``: a small randomly initialised ordering model, for smoke runs only."""


def _ordering_model(weights: str) -> torch.nn.Module:
    """The frozen ordering model of ``ordering_weights``: a weights file, or :data:`UNTRAINED`."""
    if weights != UNTRAINED:
        return load_pretrained(weights)
    from hypercut.ordering import Hyperplane, OrderingModel, PairEncoder

    return OrderingModel(PairEncoder(width=8, dims=(16, 16), num_res_blocks=1, out_dim=16), Hyperplane(16))


def build_loggers(cfg: DictConfig, resume: bool = False) -> list[Logger]:
    """Loggers from ``cfg.logger``, with what makes one W&B run per job.

    The W&B logger is given, unless its config sets them: ``name``, the run folder relative to
    ``paths.log_dir`` (``train/2026-01-01_00-00-00``, ``train/multirun_<time>/1``); ``group``, the
    sweep folder's name in a multirun; ``id``, the W&B id of the run folder's earlier run when
    resuming; and ``mode``: ``"offline"`` when :func:`wandb_offline_by_default`, else ``WANDB_MODE``
    if set (W&B's settings files decide otherwise). With ``resume`` a CSV
    logger writes beside the earlier run's ``metrics.csv`` instead of replacing it.

    Args:
        cfg: the job's config.
        resume: the job continues a checkpoint of its run folder.

    Raises:
        ConfigError: a TensorBoard logger without the ``tensorboard`` package.
    """
    configure_environment()
    loggers: list[Logger] = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is None or "_target_" not in node:
            continue
        target = str(node._target_)
        kwargs: dict[str, Any] = {}
        if target.endswith("WandbLogger"):
            kwargs = _wandb_arguments(cfg, node, resume)
        elif target.endswith("TensorBoardLogger"):
            _require_tensorboard(name)
        elif target.endswith("CSVLogger") and resume:
            kwargs = _resumed_csv_version(node)
        logger = make(node, **kwargs)
        if target.endswith("WandbLogger"):
            # Lightning passes anonymous=None to wandb.init, which wandb >= 0.19 warns is deprecated.
            logger._wandb_init.pop("anonymous", None)
        loggers.append(logger)
    return loggers


def _wandb_arguments(cfg: DictConfig, node: DictConfig, resume: bool) -> dict[str, Any]:
    out = Path(cfg.paths.output_dir).resolve()
    kwargs: dict[str, Any] = {}
    if not node.get("name"):
        log_dir = Path(cfg.paths.log_dir).resolve()
        kwargs["name"] = str(out.relative_to(log_dir)) if out.is_relative_to(log_dir) else out.name
    if not node.get("group") and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        kwargs["group"] = Path(HydraConfig.get().sweep.dir).name
    if resume and not node.get("id"):
        previous = previous_wandb_id(out)
        if previous is not None:
            kwargs["id"] = previous
    if "mode" not in node and wandb_offline_by_default():
        kwargs["mode"] = "offline"
    elif "mode" not in node and os.environ.get("WANDB_MODE"):
        # Read now: W&B reads the environment once per process, maybe before this job's WANDB_MODE.
        kwargs["mode"] = os.environ["WANDB_MODE"]
    return kwargs


def _resumed_csv_version(node: DictConfig) -> dict[str, Any]:
    """A new ``version`` for a resumed run's CSV logger when the earlier run's ``metrics.csv`` exists.

    Lightning's CSV logger deletes the ``metrics.csv`` it finds in its folder; the resumed run writes
    ``<its folder>/resume_<n>/metrics.csv`` instead, so the earlier history stays.
    """
    version = node.get("version")
    if version is None:  # Lightning picks a new version_<n> folder itself
        return {}
    version = f"version_{version}" if isinstance(version, int) else str(version)
    folder = Path(str(node.save_dir), str(node.get("name", "lightning_logs") or ""), version)
    if not (folder / "metrics.csv").is_file():
        return {}
    n = 1
    while (folder / f"resume_{n}").exists():
        n += 1
    return {"version": str(Path(version, f"resume_{n}"))}


_WANDB_RUN_FOLDER = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-([a-z0-9]+)$")


def previous_wandb_id(run_dir: str | Path) -> str | None:
    """The W&B id of the latest W&B run written into ``run_dir/wandb/`` (``None`` if there is none)."""
    found = []
    for folder in Path(run_dir, "wandb").glob("*run-*"):
        match = _WANDB_RUN_FOLDER.match(folder.name)
        if match and folder.is_dir():
            found.append((match.group(1), match.group(2)))
    return max(found)[1] if found else None


def _require_tensorboard(name: str) -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"logger.{name}: TensorBoard is not installed; pip install 'hypercut[tensorboard]', "
                "or use logger=wandb or logger=csv"
            ) from None


def finish_wandb(exit_code: int = 0) -> None:
    """End the open W&B run (so the next job of a multirun starts its own), saying how to upload it."""
    if "wandb" not in sys.modules:
        return
    import wandb

    if wandb.run is None:
        return
    if wandb.run.settings.mode == "offline":
        log.info("W&B run saved offline; upload it with: wandb sync %s", wandb.run.settings.sync_dir)
    wandb.finish(exit_code=exit_code)


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """Callbacks from ``cfg.callbacks`` (each entry with a ``_target_``).

    A progress bar is left out when ``trainer.enable_progress_bar`` is false (Lightning refuses both).
    """
    from lightning.pytorch.callbacks import ProgressBar

    callbacks = [make(node) for node in (cfg.get("callbacks") or {}).values() if node is not None and "_target_" in node]
    if cfg.get("trainer", {}).get("enable_progress_bar", True) is False:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def _parameter_counts(module: LightningModule) -> dict[str, int]:
    counts = {"params/total": sum(p.numel() for p in module.parameters())}
    counts["params/trainable"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return counts


# --------------------------------------------------------------------------------------------- train
def train(cfg: DictConfig) -> float | None:
    """Train (and test) the module of ``cfg``; returns ``cfg.optimized_metric`` for sweeps.

    Writes into ``paths.output_dir``: ``checkpoints/{best,last}.ckpt``, ``weights.pt`` (weights-only,
    see :mod:`hypercut.export`) and ``metrics.json`` with every logged value. The test stage and
    ``weights.pt`` use the best validated weights; with ``validate_untrained`` the weights before
    training are among them.

    Stopped by Ctrl-C or SIGTERM, it still writes ``checkpoints/last.ckpt`` (resumable with
    ``ckpt_path=last``), ``weights.pt`` and ``metrics.json``, then raises ``SystemExit`` with status
    128 + the signal number (130, 143). A resumed run keeps the CSV history of the earlier ones.

    Raises:
        ValueError: ``ckpt_path`` is a URL or a file that is not a readable checkpoint (checked before
            anything is written).
    """
    with quiet_lightning():
        try:
            value = _train(cfg)
        except BaseException:
            finish_wandb(exit_code=1)
            raise
        finish_wandb()
    return value


def _train(cfg: DictConfig) -> float | None:
    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.trainer.states import TrainerStatus
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    configure_environment()
    if cfg.get("seed") is not None:
        seed_everything(cfg.seed, workers=True)
    out = output_dir(cfg)
    ckpt_path = _resolve_ckpt(cfg, out)
    datamodule = make(cfg.data)
    module = build_module(cfg)
    loggers = build_loggers(cfg, resume=ckpt_path is not None)
    trainer: Trainer = make(cfg.trainer, logger=loggers or False, callbacks=build_callbacks(cfg))
    hyperparameters = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams({**hyperparameters, **_parameter_counts(module)})  # type: ignore[dict-item]

    metrics: dict[str, float] = {}
    start: tuple[float, dict[str, torch.Tensor]] | None = None  # the monitored value before training, and its weights
    if cfg.get("validate_untrained") and cfg.get("ckpt_path") is None:
        # The untrained network's scores, the baseline every trained value is read against.
        trainer.validate(module, datamodule=datamodule, verbose=False)
        metrics.update({k.replace("val/", "untrained/", 1): v for k, v in _scalars(trainer.callback_metrics).items()})
        for logger in loggers:
            logger.log_metrics({k: v for k, v in metrics.items()}, step=0)
        monitored = str(cfg.get("optimized_metric") or "").replace("val/", "untrained/", 1)
        if monitored in metrics:
            start = (metrics[monitored], copy.deepcopy(module.state_dict()))
    interrupted: SystemExit | None = None
    if cfg.get("train", True):
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SystemExit as stop:  # how Lightning ends a run on Ctrl-C (exit 1) and on SIGTERM
            if trainer.state.status != TrainerStatus.INTERRUPTED:
                raise
            interrupted = stop
        metrics.update(_scalars(trainer.callback_metrics))
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if best and not getattr(trainer, "fast_dev_run", False):
        # Test and export the best validated weights, not whatever the last step left; the weights
        # before training count too (ModelCheckpoint never sees that validation).
        state = None
        if start is not None and _beats(start[0], trainer.checkpoint_callback):
            log.warning("no validation beat the weights before training (%s %.4g): exporting those", cfg.optimized_metric, start[0])
            state = start[1]
        else:
            try:
                state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            except (RuntimeError, OSError, EOFError) as err:
                if interrupted is None:
                    raise
                # The signal arrived while best.ckpt was being written: keep the latest weights.
                log.warning("%s is unreadable (%s): exporting the weights of step %d", best, err, trainer.global_step)
        if state is not None:
            module.load_state_dict(state)
            if interrupted is None and cfg.model.kind != "deblur":
                # An ordering run has no test stage: its val metrics must describe the exported weights.
                trainer.validate(module, datamodule=datamodule, verbose=False)
                metrics.update(_scalars(trainer.callback_metrics))
    if interrupted is None and cfg.get("test", True) and cfg.model.kind == "deblur" and _has_split(datamodule, "test"):
        trainer.test(module, datamodule=datamodule, verbose=False)
        metrics.update(_scalars(trainer.callback_metrics))
        log.info("test: %s", summary_line(metrics, "test"))
    if cfg.get("export_weights", True) and trainer.is_global_zero:
        path = export_module(module, out / "weights.pt", metrics)
        log.info("weights written to %s", path)
    if trainer.is_global_zero:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    if interrupted is not None:  # Lightning has finalized the loggers as failed
        signum = signal.SIGTERM if isinstance(interrupted, SIGTERMException) else signal.SIGINT
        log.error("%s at step %d: checkpoint, weights and metrics written to %s", signum.name, trainer.global_step, out)
        raise SystemExit(128 + signum) from interrupted
    for logger in loggers:
        logger.finalize("success")
    value = metrics.get(cfg.get("optimized_metric") or "")
    return float(value) if value is not None else None


def _beats(value: float, callback: Callback | None) -> bool:
    """Whether ``value`` of the monitored metric is better than the checkpoint callback's best so far."""
    best = getattr(callback, "best_model_score", None)
    if best is None:
        return False
    return value < float(best) if getattr(callback, "mode", "max") == "min" else value > float(best)


def _resolve_ckpt(cfg: DictConfig, out: Path) -> str | None:
    """The local checkpoint to resume from (``ckpt_path``: ``last`` or a file), checked readable.

    Raises:
        ValueError: a URL (a remote checkpoint could run code when unpickled), or an unreadable file.
        FileNotFoundError: no such file.
    """
    ckpt = cfg.get("ckpt_path")
    if ckpt is None:
        return None
    if ckpt == "last":
        path = out / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise FileNotFoundError(f"ckpt_path=last: {path} does not exist (set hydra.run.dir to the run to resume)")
    else:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", str(ckpt)):
            raise ValueError(f"ckpt_path={ckpt}: remote checkpoints are not loaded; download the file and pass its path")
        path = Path(ckpt)
        if not path.is_file():
            raise FileNotFoundError(f"ckpt_path={ckpt}: {path} is not a file")
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise ValueError(f"ckpt_path={ckpt}: {path} is not a readable checkpoint: {err}") from err
    return str(path)


def _has_split(datamodule: Any, split: str) -> bool:
    has = getattr(datamodule, "has_split", None)
    return bool(has(split)) if callable(has) else True


def summary_line(metrics: dict[str, float], stage: str) -> str:
    """``stage``'s mean PSNR/SSIM, their p-variants, the identity baseline's and Con@k, on one line."""
    shown = re.compile(r"(identity_)?p?(psnr|ssim)|pred_con\d+")
    values = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{stage}/")}
    return ", ".join(f"{k} {v:.4g}" for k, v in sorted(values.items()) if shown.fullmatch(k))


def _scalars(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) or (torch.is_tensor(v) and v.numel() == 1)}


# --------------------------------------------------------------------------------------------- export
def export_module(module: LightningModule, path: str | Path, metrics: dict[str, float] | None = None) -> Path:
    """Write the weights-only file of a trained LightningModule's ``net`` (deblurring or ordering)."""
    spec = module.hparams.get("net_spec")
    if not spec:
        raise ValueError("the module stores no net_spec: build it with hypercut.tasks.build_module")
    return save_weights(module.net, path, spec, metrics)  # type: ignore[arg-type]


def export_checkpoint(ckpt_path: str | Path, out: str | Path) -> Path:
    """Convert a Lightning ``.ckpt`` of either module into a weights-only file.

    The checkpoint is read with ``weights_only=True``; the model is rebuilt from the spec stored in
    its hyper-parameters, which may only name classes of :data:`hypercut.export.MODEL_CLASSES`, never
    from pickled objects.

    Raises:
        ValueError: ``out`` is the checkpoint itself, a spec names another class, or the weights are
            not finite.
    """
    if Path(out).resolve() == Path(ckpt_path).resolve():
        raise ValueError(f"out={out}: would replace the checkpoint {ckpt_path} by a weights file; choose another out=")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    hp = ckpt.get("hyper_parameters", {})
    # ("model_spec", "model."): ordering checkpoints written before OrderingLitModule named it `net`.
    for key, prefix in (("net_spec", "net."), ("model_spec", "model.")):
        spec = hp.get(key)
        if spec:
            model = build_from_spec(spec, ckpt_path, f"hyper_parameters.{key}")
            state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
            model.load_state_dict(state)
            return save_weights(model, out, spec)
    raise ValueError(f"{ckpt_path}: hyper_parameters has neither net_spec nor model_spec")


# --------------------------------------------------------------------------------------------- compose
def compose(config_name: str = "train", overrides: list[str] | tuple[str, ...] = (), output_dir: str | Path | None = None) -> DictConfig:
    """Compose a packaged config without ``@hydra.main`` (tests, notebooks, the demo).

    ``paths.output_dir`` normally comes from Hydra's run folder; here it is ``output_dir``
    (required unless an override sets it).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module="hypercut.conf", version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    if output_dir is not None:
        cfg.paths.output_dir = str(output_dir)
    return cfg


# --------------------------------------------------------------------------------------------- evaluate
def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Evaluate a deblurring weights file on a dataset split; writes ``results.{md,csv,json}``.

    The table has, per frame, PSNR, SSIM, pPSNR, the per-pixel best-direction PSNR (pxPSNR), pSSIM and
    the identity baseline's pPSNR; a summary of the model against the identity baseline (pPSNR, pSSIM,
    pxPSNR, centre-frame PSNR); and the Hit/Con of the predictions under the ordering model when
    ``ordering_weights`` is given (see :class:`hypercut.metrics.VideoMetrics` for the definitions).

    Samples go one at a time, with a progress bar, unless ``data.eval_batch_size`` is set; the time
    per sample is logged.

    Returns:
        Every metric, keyed ``<split>/<name>`` (e.g. ``test/ppsnr_f1``).
    """
    import time

    from lightning.pytorch import Trainer

    from hypercut.lit import DeblurLitModule
    from hypercut.losses import NaiveLoss
    from hypercut.report import write_results

    configure_environment()
    net = with_self_ensemble(load_pretrained(cfg.weights), cfg.get("self_ensemble", 1))
    canonicalizer = None
    if cfg.get("ordering_weights"):
        canonicalizer = make(cfg.canonicalizer, model=load_pretrained(cfg.ordering_weights))
    num_frames = int(cfg.num_frames)
    module = DeblurLitModule(
        net=net, loss=NaiveLoss(), canonicalizer=canonicalizer, num_frames=num_frames
    )
    # Batches of full-resolution sequences cost memory and do not run faster on a CPU.
    one_by_one = "eval_batch_size" in cfg.data and cfg.data.eval_batch_size is None
    datamodule = make(cfg.data, **({"eval_batch_size": 1} if one_by_one else {}))
    datamodule.setup("test" if cfg.split == "test" else "validate")
    loader = datamodule.test_dataloader() if cfg.split == "test" else datamodule.val_dataloader()
    with quiet_lightning():
        trainer = Trainer(
            accelerator=cfg.accelerator,
            devices=1,
            precision=cfg.precision,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=True,
            default_root_dir=str(output_dir(cfg)),
        )
        start = time.perf_counter()
        trainer.test(module, dataloaders=loader, verbose=False)
        seconds = time.perf_counter() - start
    samples = len(loader.dataset) if hasattr(loader.dataset, "__len__") else 0
    if samples:
        log.info("evaluated %d samples in %.1f s (%.2f s per sample)", samples, seconds, seconds / samples)
    metrics = {k.replace("test/", f"{cfg.split}/", 1): v for k, v in _scalars(trainer.callback_metrics).items()}
    paths = write_results(metrics, cfg.split, num_frames, output_dir(cfg))
    log.info("results written to %s", paths["md"])
    return metrics


# --------------------------------------------------------------------------------------------- label order
def label_order(cfg: DictConfig) -> dict[str, Any]:
    """Write a NEW metadata file with ``order`` set per sample by a trained ordering model.

    Every partition is labelled on its stored (unflipped) frames at full resolution: ``reverse``
    where the rule puts the sequence on the negative side, ``keep`` otherwise. A sample is
    *inconsistent* when its pairs do not all fall on the same side.

    Returns:
        ``{"output": path, "samples": n, "reversed": r, "inconsistent": i}``.
    """
    import dataclasses

    from rich.progress import track

    from hypercut.data import BlurSequenceDataset, resolve_metadata_path, write_metadata
    from hypercut.ordering import OrderCanonicalizer, flip_mask

    root = Path(cfg.data.root)
    source = resolve_metadata_path(root, cfg.data.metadata)
    target = root / cfg.output if cfg.output else source
    if target.exists() and not cfg.overwrite:
        what = "the input metadata" if target.resolve() == source.resolve() else "it exists"
        raise FileExistsError(f"output={cfg.output}: would overwrite {target} ({what}); pass overwrite=true or another output=")
    canonicalizer: OrderCanonicalizer = make(cfg.canonicalizer, model=load_pretrained(cfg.ordering_weights))
    device = torch.device(cfg.device)
    canonicalizer.to(device)
    dataset = BlurSequenceDataset(root, source.resolve(), split=None)
    samples = list(dataset.metadata.samples)
    reversed_count = inconsistent = 0
    for position in track(range(len(dataset)), description="labelling orders"):
        _, sharp = dataset.read_arrays(position)
        seq = torch.from_numpy(sharp).permute(0, 3, 1, 2).unsqueeze(0).to(device)
        with torch.inference_mode():
            u, _ = canonicalizer.scores(seq)
        flipped = bool(flip_mask(u, canonicalizer.rule)[0])
        signs = torch.sign(u[0])
        inconsistent += int(not (bool((signs > 0).all()) or bool((signs < 0).all())))
        reversed_count += int(flipped)
        index = dataset.indices[position]
        samples[index] = dataclasses.replace(samples[index], order="reverse" if flipped else "keep")
    write_metadata(dataclasses.replace(dataset.metadata, samples=samples), target)
    stats = {"output": str(target), "samples": len(dataset), "reversed": reversed_count, "inconsistent": inconsistent}
    print(f"labelled {stats['samples']} samples: {reversed_count} reversed, {inconsistent} inconsistent -> {target}")
    return stats


# --------------------------------------------------------------------------------------------- infer / export
def infer(cfg: DictConfig) -> Any:
    """Run a deblurring weights file on images or folders; per input T PNG frames, a GIF and an MP4."""
    from hypercut.inference import infer as run_inference

    report = run_inference(
        with_self_ensemble(load_pretrained(cfg.weights, map_location=cfg.device), cfg.get("self_ensemble", 1)),
        input_paths(cfg.inputs),
        output_dir(cfg),
        device=cfg.device,
        bf16=cfg.bf16,
        tile=cfg.tile,
        overlap=cfg.overlap,
        max_pixels=cfg.max_pixels,
        fps=cfg.fps,
        formats=tuple(cfg.formats),
        overwrite=bool(cfg.get("overwrite", False)),
    )
    for path, reason in report.failed:
        log.error("failed: %s: %s", path, reason)
    return report


def with_self_ensemble(net: torch.nn.Module, passes: int) -> torch.nn.Module:
    """``net`` itself for ``passes=1``, else wrapped in :class:`hypercut.models.SelfEnsemble`.

    Raises:
        ConfigError: ``passes`` is not 1, 2, 4 or 8.
    """
    from hypercut.models import SelfEnsemble

    if passes not in (1, 2, 4, 8):
        raise ConfigError(f"self_ensemble={passes}: choose 1 (off), 2, 4 or 8 passes over flips and transposes")
    return net if passes == 1 else SelfEnsemble(net, passes)


def input_paths(inputs: Any) -> list[Path]:
    """``inputs`` of ``hypercut-infer`` as paths: one path (``inputs=photo.jpg``) or a list of them.

    Raises:
        ConfigError: no input at all.
    """
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs or [])
    if not items:
        raise ConfigError("inputs: no image or folder given (inputs=photo.jpg or inputs=[a.jpg,folder/])")
    return [Path(p) for p in items]


def export(cfg: DictConfig) -> Path:
    """Convert ``cfg.ckpt`` (a Lightning checkpoint of either module) into the weights file ``cfg.out``."""
    path = export_checkpoint(cfg.ckpt, cfg.out)
    print(f"weights written to {path}")
    return path

"""Tables, plot and JSON of the HyperCUT study from the runs of its ``hypercut-train`` multirun.

The study is a Hydra multirun of the library's own training (``conf/experiment/study.yaml``)::

    hypercut-train experiment=ordering_study
    hypercut-train -m experiment=study model/loss=naive,order_invariant,hypercut,hypercut_released \\
        seed=0,1,2 ordering_weights=<ordering run>/weights.pt
    python bench/study_report.py runs/study/multirun_<time> --write-docs

This script only reads what the jobs wrote: per job folder ``metrics.json`` (the test metrics that
:class:`hypercut.lit.DeblurLitModule` logs), ``.hydra/overrides.yaml`` and ``.hydra/config.yaml``
(loss, seed, steps, ordering weights); the ordering run's ``metrics.json`` (its folder holds the
``weights.pt`` the jobs name, or give ``--ordering``). Wall time of a run: from its
``.hydra/config.yaml`` (written when the job starts) to its ``metrics.json`` (written at its end).

It writes ``--json`` (``{"seeds", "steps", "ordering": {"con2", "con3", "untrained_con3"}, "losses":
{name: {"ppsnr": [f1..fT], "ppsnr_std": [...], "ppsnr_gain": [...], "ppsnr_gain_std": [...],
"ppsnr_gain_by_seed": [...], ...}}, "identity": {"ppsnr": [...]}, "wall_s", "elapsed_s", "ordering_wall_s",
"multirun_elapsed_s"}``; ``ppsnr_gain`` is each job's pPSNR minus the identity's on its own seed's test
scenes, which differ between seeds, so its spread over seeds is that of the gain alone;
``wall_s`` sums the runs' wall times, ``elapsed_s`` runs from the first start to the last end, which is
shorter when jobs ran side by side; ``multirun_elapsed_s`` is the same for the deblurring jobs alone,
so that ``ordering_wall_s + multirun_elapsed_s`` leaves out any pause between the two commands), a
PNG of the per-frame pPSNR per loss (``--plot``), prints the Markdown tables and, with
``--write-docs``, puts them into their section of ``docs/RESULTS.md``.

``--quick FOLDER`` first runs a tiny version of the two commands (seconds of training) into
``FOLDER`` and reports on it there: a smoke test of the whole path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
LOSS_ORDER = ("naive", "order_invariant", "best_direction", "hypercut", "hypercut_released")
NICE = {
    "naive": "naive",
    "order_invariant": "order-invariant",
    "best_direction": "best-direction",
    "hypercut": "HyperCUT",
    "hypercut_released": "HyperCUT (released)",
}
_CLASS_TO_LOSS = {
    "NaiveLoss": "naive",
    "OrderInvariantLoss": "order_invariant",
    "BestDirectionLoss": "best_direction",
    "HyperCUTLoss": "hypercut",
    "HyperCUTReleasedLoss": "hypercut_released",
}
BEGIN, END = "<!-- study_report:begin -->", "<!-- study_report:end -->"
# Tiny sizes for --quick: the study's recipe, a narrow net, a few steps on 32 px crops.
_QUICK_DATA = [
    "data.crop_size=32", "data.batch_size=2", "data.eval_size=32", "data.num_val=4", "data.num_test=4",
    "trainer.max_steps=4", "trainer.val_check_interval=2",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------- reading
def _span(run: Path) -> tuple[float, float] | None:
    """Start and end time of a run (modification times of its config and of its metrics)."""
    start, end = run / ".hydra" / "config.yaml", run / "metrics.json"
    if not (start.is_file() and end.is_file()):
        return None
    return start.stat().st_mtime, end.stat().st_mtime


def _wall_s(run: Path) -> float | None:
    span = _span(run)
    return None if span is None else round(span[1] - span[0], 1)


def _timeline(run: Path) -> list[dict[str, Any]]:
    """The run's validations (``timeline.json`` of the MetricTimeline callback), ``[]`` without one."""
    timeline = run / "timeline.json"
    return json.loads(timeline.read_text()) if timeline.is_file() else []


def _loss_name(run: Path, config: dict[str, Any]) -> str:
    overrides_file = run / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    for item in overrides or []:
        key, _, value = str(item).partition("=")
        if key.lstrip("+~") == "model/loss":
            return value
    target = str(config["model"]["loss"]["_target_"]).rsplit(".", 1)[-1]
    return _CLASS_TO_LOSS.get(target, target)


def read_jobs(sweep: Path) -> list[dict[str, Any]]:
    """Every job folder of a multirun (a folder with ``.hydra/config.yaml``), finished or not.

    Returns:
        Per job: ``dir``, ``loss``, ``seed``, ``steps`` (``trainer.max_steps``), ``validated_step``
        (the step of its last validation, which is ``steps`` unless ``trainer.max_time`` stopped it),
        ``timeline`` (its validations), ``ordering_weights``, ``num_frames``, ``wall_s``, ``span`` (start and end time) and
        ``metrics`` (``None`` for a job without ``metrics.json``).
    """
    jobs = []
    for config_file in sorted(sweep.glob("*/.hydra/config.yaml")):
        run = config_file.parent.parent
        config = yaml.safe_load(config_file.read_text())
        metrics_file = run / "metrics.json"
        timeline = _timeline(run)
        jobs.append({
            "dir": run.name,
            "loss": _loss_name(run, config),
            "seed": int(config["seed"]),
            "steps": int(config["trainer"]["max_steps"]),
            "validated_step": int(timeline[-1]["step"]) if timeline else None,
            "timeline": timeline,
            "ordering_weights": config.get("ordering_weights"),
            "num_frames": int(config["num_frames"]),
            "wall_s": _wall_s(run),
            "span": _span(run),
            "metrics": json.loads(metrics_file.read_text()) if metrics_file.is_file() else None,
        })  # fmt: skip
    if not jobs:
        raise SystemExit(f"{sweep}: no job folders (*/.hydra/config.yaml); is it a multirun folder?")
    return jobs


def read_ordering(folder: Path) -> dict[str, Any]:
    """Val Con@2/Con@3 of the ordering run and of its untrained network, and the run's wall time."""
    metrics = json.loads((folder / "metrics.json").read_text())
    return {
        "run": str(folder),
        "con2": metrics.get("val/con2"),
        "con3": metrics.get("val/con3"),
        "untrained_con3": metrics.get("untrained/con3"),
        "wall_s": _wall_s(folder),
        "span": _span(folder),
    }


# ---------------------------------------------------------------------------------------------- summary
def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _frames(metrics: dict[str, float], name: str, t: int) -> list[float]:
    return [float(metrics[f"test/{name}_f{i}"]) for i in range(1, t + 1)]


def _outer_curve(runs: list[dict[str, Any]], t: int) -> dict[str, list[Any]] | None:
    """Mean over seeds of the outer frames' val pPSNR, ``(f1 + fT) / 2``, at every validated step."""
    keys = ("val/ppsnr_f1", f"val/ppsnr_f{t}")
    by_step: dict[int, list[float]] = {}
    for job in runs:
        for point in job["timeline"]:
            if all(k in point for k in keys):
                by_step.setdefault(int(point["step"]), []).append((point[keys[0]] + point[keys[1]]) / 2)
    steps = sorted(s for s, v in by_step.items() if len(v) == len(runs))  # steps every seed reached
    if not steps:
        return None
    return {"step": steps, "ppsnr": [round(statistics.fmean(by_step[s]), 4) for s in steps]}


def summarize(jobs: list[dict[str, Any]], ordering: dict[str, Any] | None) -> dict[str, Any]:
    """The study's JSON: per loss the mean and std over seeds of every per-frame test measure.

    Raises:
        SystemExit: no finished job, or the jobs of one seed ran different numbers of steps.
    """
    done = [j for j in jobs if j["metrics"] and "test/ppsnr_f1" in j["metrics"]]
    if not done:
        raise SystemExit("no finished job (metrics.json with test/ppsnr_f1)")
    t = done[0]["num_frames"]
    for seed in {j["seed"] for j in done}:
        steps = {j["steps"] for j in done if j["seed"] == seed}
        if len(steps) > 1:
            raise SystemExit(f"seed {seed}: the losses ran different numbers of steps {sorted(steps)}")
    names = [n for n in LOSS_ORDER if any(j["loss"] == n for j in done)]
    names += sorted({j["loss"] for j in done} - set(names))
    losses: dict[str, Any] = {}
    for name in names:
        runs = sorted((j for j in done if j["loss"] == name), key=lambda j: j["seed"])
        entry: dict[str, Any] = {"seeds": [j["seed"] for j in runs]}
        for key in ("ppsnr", "pssim", "psnr", "canon_psnr"):
            if all(f"test/{key}_f1" in j["metrics"] for j in runs):
                per_frame = [_frames(j["metrics"], key, t) for j in runs]
                stats = [_mean_std([r[i] for r in per_frame]) for i in range(t)]
                entry[key] = [round(m, 4) for m, _ in stats]
                entry[f"{key}_std"] = [round(s, 4) for _, s in stats]
        order_keys = ("order_follows", "order_reversed", "order_symmetric")
        if all(f"test/{k}" in j["metrics"] for j in runs for k in order_keys):
            entry["order"] = {
                k.removeprefix("order_"): round(statistics.fmean(float(j["metrics"][f"test/{k}"]) for j in runs), 4)
                for k in order_keys
            }
        if all("test/identity_ppsnr_f1" in j["metrics"] for j in runs):
            # each job against the identity on its own seed's test scenes: the seeds draw different scenes
            gains = [[p - b for p, b in zip(_frames(j["metrics"], "ppsnr", t), _frames(j["metrics"], "identity_ppsnr", t))]
                     for j in runs]  # fmt: skip
            stats = [_mean_std([g[i] for g in gains]) for i in range(t)]
            entry["ppsnr_gain"] = [round(m, 4) for m, _ in stats]
            entry["ppsnr_gain_std"] = [round(s, 4) for _, s in stats]
            entry["ppsnr_gain_by_seed"] = [round(statistics.fmean(g), 4) for g in gains]
        curve = _outer_curve(runs, t)
        if curve:
            entry["outer_curve"] = curve
        losses[name] = entry
    identity_runs = [_frames(j["metrics"], "identity_ppsnr", t) for j in done if j["loss"] == names[0]]
    identity = [round(statistics.fmean(r[i] for r in identity_runs), 4) for i in range(t)]
    walls = [j["wall_s"] for j in jobs if j["wall_s"] is not None]
    wall = sum(walls) + ((ordering or {}).get("wall_s") or 0.0)
    # from the first start to the last end: less than ``wall`` when jobs ran side by side
    job_spans = [j["span"] for j in jobs if j["span"]]
    spans = job_spans + ([ordering["span"]] if ordering and ordering.get("span") else [])
    elapsed = max(e for _, e in spans) - min(s for s, _ in spans) if spans else 0.0
    multirun = max(e for _, e in job_spans) - min(s for s, _ in job_spans) if job_spans else 0.0
    return {
        "seeds": sorted({j["seed"] for j in done}),
        "steps": max(j["steps"] for j in done),
        "num_frames": t,
        "ordering": {k: (ordering or {}).get(k) for k in ("con2", "con3", "untrained_con3")},
        "losses": losses,
        "identity": {"ppsnr": identity},
        "wall_s": round(wall, 1),
        "elapsed_s": round(elapsed, 1),
        "ordering_wall_s": (ordering or {}).get("wall_s"),
        "multirun_elapsed_s": round(multirun, 1),
        "jobs": [
            {k: j[k] for k in ("dir", "loss", "seed", "steps", "validated_step", "wall_s")} | {"finished": j in done}
            for j in jobs
        ],
    }


# ---------------------------------------------------------------------------------------------- output
def _row(label: str, means: list[float], stds: list[float] | None, digits: int, sign: str = "") -> str:
    cells = [f"{m:{sign}.{digits}f}" + (f" ± {s:.{digits}f}" if stds is not None else "") for m, s in zip(means, stds or means)]
    mean = statistics.fmean(means)
    return f"| {label} | " + " | ".join(cells) + f" | {mean:{sign}.{digits}f} |"


def markdown(study: dict[str, Any]) -> str:
    """The study's tables: per-frame pPSNR, pSSIM, canonical-order PSNR, the predictions' order."""
    t = study["num_frames"]
    head = "| loss | " + " | ".join(f"f{i}" for i in range(1, t + 1)) + " | mean |\n|---" + "|---" * (t + 1) + "|"
    o = study["ordering"]
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    lines = [
        f"Seeds {study['seeds']}, {study['steps']} steps per job, test split; mean ± std over seeds. "
        f"Ordering model: val Con@2 {fmt(o['con2'])}, Con@3 {fmt(o['con3'])} "
        f"(untrained network: Con@3 {fmt(o['untrained_con3'])}). Wall time, all runs one after another: "
        f"{study['wall_s'] / 60:.1f} min; first start to last end: {study['elapsed_s'] / 60:.1f} min"
        + (
            f" (the ordering run {study['ordering_wall_s'] / 60:.1f} min, then the multirun's jobs "
            f"{study['multirun_elapsed_s'] / 60:.1f} min from the first start to the last end)."
            if study.get("ordering_wall_s")
            else "."
        ),
        "",
    ]
    short = [j for j in study["jobs"] if j["validated_step"] is not None and j["validated_step"] < j["steps"]]
    unfinished = [j for j in study["jobs"] if not j["finished"]]
    if short or unfinished:
        lines += [
            "**Unequal runs**: "
            + "; ".join(f"job {j['dir']} ({j['loss']}, seed {j['seed']}) last validated at step "
                        f"{j['validated_step']} of {j['steps']}" for j in short)
            + ("; " if short and unfinished else "")
            + "; ".join(f"job {j['dir']} ({j['loss']}, seed {j['seed']}) did not finish" for j in unfinished),
            "",
        ]  # fmt: skip
    tables = (("ppsnr", "pPSNR per frame (dB)", 2), ("pssim", "pSSIM per frame", 4),
              ("canon_psnr", "PSNR per frame against the ground truth in the ordering model's canonical order (dB)", 2))  # fmt: skip
    for key, title, digits in tables:
        lines += [f"#### {title}", "", head]
        if key == "ppsnr":
            lines.append(_row("identity (blurry ×T)", study["identity"]["ppsnr"], None, digits))
        for name, e in study["losses"].items():
            if key in e:
                lines.append(_row(f"{NICE.get(name, name)} (n={len(e['seeds'])})", e[key], e[f"{key}_std"], digits))
        lines.append("")
    gain_head = head.replace(" mean |\n", " mean | mean per seed |\n") + "---|"
    lines += ["#### pPSNR gain over the identity per frame (dB; each job against the identity on its seed's test scenes)",
              "", gain_head]  # fmt: skip
    for name, e in study["losses"].items():
        if "ppsnr_gain" in e:
            by_seed = ", ".join(f"{g:+.2f}" for g in e["ppsnr_gain_by_seed"])
            row = _row(f"{NICE.get(name, name)} (n={len(e['seeds'])})", e["ppsnr_gain"], e["ppsnr_gain_std"], 2, "+")
            lines.append(f"{row} {by_seed} |")
    lines.append("")
    lines += ["#### Order of the predictions (against the canonical order; ties within 0.05 dB mean PSNR)", "",
              "| loss | follows | reversed | time-symmetric |", "|---|---|---|---|"]  # fmt: skip
    for name, e in study["losses"].items():
        if "order" in e:
            lines.append(f"| {NICE.get(name, name)} | {e['order']['follows']:.3f} | {e['order']['reversed']:.3f} "
                         f"| {e['order']['symmetric']:.3f} |")  # fmt: skip
    curves = {name: e["outer_curve"] for name, e in study["losses"].items() if "outer_curve" in e}
    steps = sorted({s for c in curves.values() for s in c["step"]})
    if curves:
        lines += ["", f"#### Outer frames during training: val pPSNR of (f1 + f{t}) / 2 (dB), mean over seeds", "",
                  "| loss | " + " | ".join(f"step {s}" for s in steps) + " |", "|---" * (len(steps) + 1) + "|"]  # fmt: skip
        values = {name: dict(zip(c["step"], c["ppsnr"])) for name, c in curves.items()}
        for name, v in values.items():
            lines.append(f"| {NICE.get(name, name)} | " + " | ".join(f"{v[s]:.2f}" if s in v else "" for s in steps) + " |")
        for other in ("naive", "order_invariant"):  # the gap the study is about, against training steps
            if "hypercut" in values and other in values:
                hc, v = values["hypercut"], values[other]
                lines.append(f"| *HyperCUT − {NICE[other]}* | "
                             + " | ".join(f"{hc[s] - v[s]:+.2f}" if s in hc and s in v else "" for s in steps) + " |")
    hc = study["losses"].get("hypercut")
    if hc:
        lines += ["", "Outer frames, HyperCUT minus (mean pPSNR, dB):"]
        for other in ("naive", "order_invariant"):
            if other in study["losses"]:
                b = study["losses"][other]["ppsnr"]
                lines.append(f"- {NICE[other]}: f1 {hc['ppsnr'][0] - b[0]:+.2f}, f{t} {hc['ppsnr'][-1] - b[-1]:+.2f}")
    return "\n".join(lines) + "\n"


def plot(study: dict[str, Any], path: Path) -> None:
    """PNG: the per-frame test pPSNR per loss (error bars: std over seeds, the identity dashed), and the
    outer frames' val pPSNR against training steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = list(range(1, study["num_frames"] + 1))
    fig, (ax, curve) = plt.subplots(1, 2, figsize=(11, 4))
    ax.plot(frames, study["identity"]["ppsnr"], "k--", label="identity (blurry ×T)")
    for name, e in study["losses"].items():
        ax.errorbar(frames, e["ppsnr"], yerr=e["ppsnr_std"], marker="o", capsize=3, label=NICE.get(name, name))
        if "outer_curve" in e:
            curve.plot(e["outer_curve"]["step"], e["outer_curve"]["ppsnr"], marker="o", label=NICE.get(name, name))
    ax.set_xlabel("frame")
    ax.set_ylabel("test pPSNR (dB)")
    ax.set_title(f"{study['steps']} steps, seeds {study['seeds']}")
    ax.legend()
    curve.set_xlabel("training step")
    curve.set_ylabel("val pPSNR of frames 1 and T (dB)")
    curve.set_title("outer frames during training (mean over seeds)")
    curve.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_section(results_md: Path, text: str) -> None:
    """Replace the text between the study markers of ``results_md`` (appended when absent)."""
    block = f"{BEGIN}\n{text}{END}"
    old = results_md.read_text() if results_md.is_file() else ""
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip("\n") + "\n\n## The study through hypercut-train\n\n" + block + "\n"
    results_md.write_text(new)


# ---------------------------------------------------------------------------------------------- quick
def run_quick(folder: Path) -> Path:
    """Tiny ordering run + 2 losses x 2 seeds multirun with ``hypercut-train``; returns the sweep folder."""
    script = Path(sys.executable).parent / "hypercut-train"  # the one installed beside this Python
    train = [str(script) if script.is_file() else "hypercut-train"]
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", WANDB_MODE="offline", WANDB_SILENT="true",
               HYPERCUT_ROOT=str(folder))  # fmt: skip
    ordering = folder / "ordering"
    steps = [
        [*train, "experiment=ordering_study", f"hydra.run.dir={ordering}", "logger=csv", "model.encoder.levels=2",
         *_QUICK_DATA],
        [*train, "-m", "experiment=study", "model/loss=naive,hypercut", "seed=0,1", "model.net.base_channels=8",
         f"ordering_weights={ordering / 'weights.pt'}", f"hydra.sweep.dir={folder / 'multirun'}", *_QUICK_DATA],
    ]  # fmt: skip
    for cmd in steps:
        subprocess.run(cmd, check=True, env=env, cwd=folder)
    return folder / "multirun"


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, nargs="?", help="the multirun folder (runs/study/multirun_<time>)")
    parser.add_argument("--ordering", type=Path, help="the ordering run's folder (default: that of the jobs' weights)")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "results" / "study.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "results" / "study_ppsnr.png")
    parser.add_argument("--results-md", type=Path, default=ROOT / "docs" / "RESULTS.md")
    parser.add_argument("--write-docs", action="store_true", help="put the tables into --results-md")
    parser.add_argument("--quick", type=Path, metavar="FOLDER", help="run a tiny study into FOLDER and report there")
    args = parser.parse_args(argv)
    if args.quick is not None:
        args.quick.mkdir(parents=True, exist_ok=True)
        args.sweep = run_quick(args.quick.resolve())
        args.json, args.plot = args.quick / "study.json", args.quick / "study_ppsnr.png"
        args.results_md = args.quick / "RESULTS.md"
    if args.sweep is None:
        parser.error("give the multirun folder, or --quick FOLDER")
    jobs = read_jobs(args.sweep)
    ordering_dir = args.ordering
    weights = {j["ordering_weights"] for j in jobs}
    if ordering_dir is None and len(weights) == 1 and weights != {None}:
        candidate = Path(str(next(iter(weights)))).parent
        ordering_dir = candidate if (candidate / "metrics.json").is_file() else None
    study = summarize(jobs, read_ordering(ordering_dir) if ordering_dir else None)
    text = markdown(study)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(study, indent=1) + "\n")
    plot(study, args.plot)
    if args.write_docs or args.quick is not None:
        write_section(args.results_md, text)
    print(text)
    print(f"wrote {args.json} and {args.plot}" + (f"; tables in {args.results_md}" if args.write_docs else ""))
    return study


if __name__ == "__main__":
    main()

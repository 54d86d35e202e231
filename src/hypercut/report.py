"""Per-frame result tables (Markdown, CSV, JSON) from logged metric dictionaries."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

FRAME_METRICS = ("psnr", "ssim", "ppsnr", "pxpsnr", "pssim", "identity_ppsnr")
ORDER_METRICS = ("pred_hit", "pred_con2", "pred_con3", "reversed_frac")
# Rows of the model-against-identity summary: (metric, label).
SUMMARY_METRICS = (
    ("ppsnr", "pPSNR"),
    ("pssim", "pSSIM"),
    ("pxpsnr", "pxPSNR (per-pixel best direction)"),
    ("psnr_center", "centre-frame PSNR"),
)


def per_frame_rows(metrics: Mapping[str, float], stage: str, num_frames: int) -> list[dict[str, object]]:
    """One row per frame (1..T) plus a ``mean`` row, one column per metric in :data:`FRAME_METRICS`.

    Args:
        metrics: logged values such as ``{"test/ppsnr_f1": 25.3, "test/ppsnr": 26.0, ...}``.
        stage: the key prefix (``"val"`` or ``"test"``).
        num_frames: T.

    Returns:
        Rows with key ``frame`` and one key per metric present in ``metrics``.
    """
    present = [m for m in FRAME_METRICS if f"{stage}/{m}" in metrics]
    rows: list[dict[str, object]] = []
    for t in range(1, num_frames + 1):
        row: dict[str, object] = {"frame": t}
        for m in present:
            value = metrics.get(f"{stage}/{m}_f{t}")
            row[m] = None if value is None else float(value)
        rows.append(row)
    rows.append({"frame": "mean", **{m: float(metrics[f"{stage}/{m}"]) for m in present}})
    return rows


def summary_rows(metrics: Mapping[str, float], stage: str) -> list[dict[str, object]]:
    """The model against the identity baseline (the blurry input repeated): one row per metric.

    Args:
        metrics: logged values such as ``{"test/ppsnr": 26.0, "test/identity_ppsnr": 24.6, ...}``.
        stage: the key prefix (``"val"`` or ``"test"``).

    Returns:
        Rows ``{"metric", "model", "identity", "gain"}`` for the metrics of :data:`SUMMARY_METRICS`
        present in ``metrics`` (``identity`` and ``gain`` are ``None`` without the baseline).
    """
    rows: list[dict[str, object]] = []
    for name, label in SUMMARY_METRICS:
        if f"{stage}/{name}" not in metrics:
            continue
        model = float(metrics[f"{stage}/{name}"])
        identity = metrics.get(f"{stage}/identity_{name}")
        baseline = None if identity is None else float(identity)
        gain = None if baseline is None else model - baseline
        rows.append({"metric": label, "model": model, "identity": baseline, "gain": gain})
    return rows


def markdown_table(rows: list[dict[str, object]], digits: int = 3) -> str:
    """Rows as a GitHub-flavoured Markdown table."""
    if not rows:
        return ""
    keys = list(rows[0])

    def fmt(value: object) -> str:
        return f"{value:.{digits}f}" if isinstance(value, float) else ("" if value is None else str(value))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(row.get(k)) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def write_results(
    metrics: Mapping[str, float], stage: str, num_frames: int, out_dir: str | Path, name: str = "results"
) -> dict[str, Path]:
    """Write ``<name>.md``, ``<name>.csv`` and ``<name>.json`` into ``out_dir``.

    The Markdown file holds the per-frame table, the model against the identity baseline and the
    ordering metrics of the predictions; the CSV file the per-frame table; the JSON file every metric
    of ``stage``. In the per-frame table the ``mean`` row of ``pxpsnr`` is the whole-sequence value
    (the PSNR of the per-pixel best errors over all frames, averaged over samples), not the mean of
    its column.

    Returns:
        The paths written, by format.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = per_frame_rows(metrics, stage, num_frames)
    order: dict[str, object] = {m: float(metrics[f"{stage}/{m}"]) for m in ORDER_METRICS if f"{stage}/{m}" in metrics}
    text = f"## {stage} results (per frame)\n\n{markdown_table(rows)}\n"
    summary = summary_rows(metrics, stage)
    if summary:
        text += f"\n## {stage}: model against the identity baseline\n\n{markdown_table(summary)}\n"
    if order:
        text += "\n" + markdown_table([order]) + "\n"
    paths = {"md": out / f"{name}.md", "csv": out / f"{name}.csv", "json": out / f"{name}.json"}
    paths["md"].write_text(text)
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    selected = {k: float(v) for k, v in metrics.items() if k.startswith(f"{stage}/")}
    paths["json"].write_text(json.dumps(selected, indent=2, sort_keys=True))
    return paths

"""Per-frame result tables (Markdown, CSV, JSON) from logged metric dictionaries."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

FRAME_METRICS = ("psnr", "ssim", "ppsnr", "pssim", "identity_ppsnr")
ORDER_METRICS = ("pred_hit", "pred_con2", "pred_con3", "reversed_frac")


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

    The Markdown file holds the per-frame table and the ordering metrics of the predictions; the JSON
    file holds every metric of ``stage``.

    Returns:
        The paths written, by format.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = per_frame_rows(metrics, stage, num_frames)
    order: dict[str, object] = {m: float(metrics[f"{stage}/{m}"]) for m in ORDER_METRICS if f"{stage}/{m}" in metrics}
    text = f"## {stage} results (per frame)\n\n{markdown_table(rows)}\n"
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

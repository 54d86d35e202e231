"""The quickstart notebook runs top to bottom (tiny settings) and reports its numbers."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HYPERCUT_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("HYPERCUT_NOTEBOOK_STEPS", "6")
    monkeypatch.setenv("NO_ALBUMENTATIONS_UPDATE", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", []))
    assert "val Con@3: untrained" in outputs
    assert "frame 7: pPSNR" in outputs and "identity" in outputs
    assert (tmp_path / "video.gif").is_file() and (tmp_path / "deblur.pt").is_file()
    assert os.environ["HYPERCUT_NOTEBOOK_STEPS"] == "6"

"""The model zoo: every shipped entry exists, opens with ``weights_only=True`` and runs."""

from __future__ import annotations

import pytest
import torch

from hypercut import zoo
from hypercut.export import allowed_targets, load_pretrained


@pytest.mark.parametrize("name", zoo.names())
def test_entry_loads_weights_only_and_runs(name: str) -> None:
    path = zoo.zoo_path(name)  # raises if the file is missing from the package
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["spec"]["_target_"] in allowed_targets()
    model = load_pretrained(name)
    assert not model.training
    with torch.no_grad():
        if name.startswith("ordering"):
            u, v = model(torch.rand(2, 7, 3, 64, 64))
            assert u.shape == v.shape == (2, 3)
        else:
            video = model(torch.rand(1, 3, 37, 50))
            assert video.shape == (1, 7, 3, 37, 50)
            assert torch.isfinite(video).all()


def test_list_models_reports_metrics() -> None:
    entries = {e.name: e for e in zoo.list_models()}
    assert set(entries) == set(zoo.names())
    assert "test/ppsnr" in entries["default"].metrics
    assert "test/identity_ppsnr" in entries["default"].metrics


def test_unknown_name_lists_the_entries() -> None:
    with pytest.raises(KeyError, match="default"):
        zoo.zoo_path("nope")
    with pytest.raises(FileNotFoundError):
        load_pretrained("nope")

"""The LightningModules' shared parts: the warm-up cosine schedule, the progress bar, the media callback
and the optimizer configuration."""

from __future__ import annotations

import math

import pytest
import torch

from hypercut.lit import warmup_cosine


def _closed_form(step: int, total: int, warmup: int, min_factor: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


@pytest.mark.parametrize("warmup", [0, 1, 5])
def test_warmup_cosine_is_linear_warmup_then_half_cosine(warmup: int) -> None:
    total, base, min_factor = 20, 0.5, 0.05
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = warmup_cosine(optimizer, total_steps=total, warmup_steps=warmup, min_factor=min_factor)
    rates = []
    for _ in range(total + 1):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [base * _closed_form(s, total, warmup, min_factor) for s in range(total + 1)]
    assert rates == pytest.approx(expected, rel=1e-6)
    assert rates[-1] == pytest.approx(base * min_factor)


def test_warmup_cosine_refuses_groups_with_different_rates() -> None:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.2}])
    with pytest.raises(ValueError, match="one learning rate"):
        warmup_cosine(optimizer, total_steps=10)

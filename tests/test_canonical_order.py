"""The canonicaliser contract between the HyperCUT losses and DeblurLitModule, and the measures of the
predictions' order (canonical-order PSNR; follows / reversed / time-symmetric)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from hypercut.losses import HyperCUTLoss, NaiveLoss
from hypercut.metrics import psnr_per_frame
from hypercut.ordering import Hyperplane, OrderCanonicalizer, OrderingModel, PairEncoder

T = 7


def _sequences(b: int, seed: int, size: int = 16) -> Tensor:
    return torch.rand(b, T, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _counting_canonicalizer() -> tuple[OrderCanonicalizer, list[int]]:
    """An OrderCanonicalizer whose ordering model counts its forward passes (trainable on purpose)."""
    torch.manual_seed(0)
    model = OrderingModel(PairEncoder(width=8, dims=(8,), num_res_blocks=1, out_dim=8), Hyperplane(8))
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    canon = OrderCanonicalizer(model)
    model.requires_grad_(True)  # the LitModule must freeze it again
    return canon, calls


# ---------------------------------------------------------------- CanonicalOrderMetrics
def test_canonical_order_metrics_values() -> None:
    from hypercut.metrics import CanonicalOrderMetrics

    canonical = _sequences(6, seed=1)
    noisy = (canonical + 0.05 * _sequences(6, seed=2)).clamp(0, 1)
    still = canonical.mean(1, keepdim=True).expand_as(canonical)  # the same frame T times
    pred = torch.cat([noisy[:3], noisy[3:5].flip(1), still[5:]])
    metric = CanonicalOrderMetrics(T, data_range=1.0, tie_db=0.05)
    metric.update(pred, canonical)
    out = metric.compute()
    assert float(out["order_follows"]) == pytest.approx(3 / 6)
    assert float(out["order_reversed"]) == pytest.approx(2 / 6)
    assert float(out["order_symmetric"]) == pytest.approx(1 / 6)
    expected = psnr_per_frame(pred, canonical, data_range=1.0).double().mean(0)
    for i in range(T):
        assert float(out[f"canon_psnr_f{i + 1}"]) == pytest.approx(float(expected[i]), rel=1e-6)
    assert float(out["canon_psnr"]) == pytest.approx(float(expected.mean()), rel=1e-6)
    # A margin wider than the gap between the directions makes every sample a tie.
    wide = CanonicalOrderMetrics(T, data_range=1.0, tie_db=100.0)
    wide.update(pred, canonical)
    assert float(wide.compute()["order_symmetric"]) == 1.0


def test_canonical_order_metrics_shards_add_up() -> None:
    """Summed states: ranks (here two metrics merged as DDP reduces them) give the one-pass result."""
    from hypercut.metrics import CanonicalOrderMetrics

    canonical = _sequences(7, seed=3)
    pred = torch.cat([canonical[:4], canonical[4:].flip(1)]) * 0.9
    whole = CanonicalOrderMetrics(T)
    whole.update(pred, canonical)
    ranks = [CanonicalOrderMetrics(T), CanonicalOrderMetrics(T)]
    for i in range(7):
        ranks[i % 2].update(pred[i : i + 1], canonical[i : i + 1])
    ranks[0].merge_state(ranks[1])
    a, b = whole.compute(), ranks[0].compute()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert CanonicalOrderMetrics(T).compute()["canon_psnr"].isnan()


# ---------------------------------------------------------------- DeblurLitModule and the contract
def _module(loss: torch.nn.Module, canon: OrderCanonicalizer | None):  # type: ignore[no-untyped-def]
    from hypercut.lit import DeblurLitModule
    from hypercut.models import MultiFrameUNet

    net = MultiFrameUNet(num_frames=T, base_channels=8, depth=2, max_channels=16)
    return DeblurLitModule(net=net, loss=loss, canonicalizer=canon, num_frames=T)


def test_training_step_scores_the_ground_truth_once_and_passes_one_canonicalizer() -> None:
    canon, calls = _counting_canonicalizer()
    seen: list[object] = []

    class Spy(HyperCUTLoss):
        def forward(self, pred, sharp, step=None, canonicalizer=None):  # type: ignore[no-untyped-def]
            seen.append((step, canonicalizer))
            return super().forward(pred, sharp, step, canonicalizer)

    module = _module(Spy(alpha_warmup_steps=0), canon)
    assert all(not p.requires_grad for p in canon.parameters())  # frozen by the module
    module.train()
    assert module.net.training and not canon.training and not canon.model.training
    sharp = _sequences(2, seed=4)
    batch = {"blurry": sharp.mean(1), "sharp": sharp, "id": ["a", "b"]}
    loss = module.training_step(batch, 0)
    loss.backward()
    # One pass for the ground truth (label and gt_score), one for the prediction.
    assert len(calls) == 2
    assert seen == [(0, canon)]
    assert all(p.grad is None for p in canon.parameters())


def test_a_loss_that_needs_the_ordering_model_is_refused_without_it() -> None:
    with pytest.raises(ValueError, match="needs the frozen ordering model"):
        _module(HyperCUTLoss(), None)


def test_validation_logs_canonical_order_measures(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import lightning as L

    canon, calls = _counting_canonicalizer()
    module = _module(NaiveLoss(), canon)
    sharp = _sequences(3, seed=5)
    items = [{"blurry": sharp[i].mean(0), "sharp": sharp[i], "id": str(i)} for i in range(3)]
    loader: torch.utils.data.DataLoader = torch.utils.data.DataLoader(items, batch_size=3)  # type: ignore[arg-type]
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.validate(module, dataloaders=loader, verbose=False)
    metrics = trainer.callback_metrics
    assert len(calls) == 2  # the ground truth canonicalised once, the prediction scored once
    for key in ("val/canon_psnr", f"val/canon_psnr_f{T}", "val/order_follows", "val/order_reversed",
                "val/order_symmetric", "val/pred_con3"):
        assert key in metrics, key
    shares = sum(float(metrics[f"val/order_{k}"]) for k in ("follows", "reversed", "symmetric"))
    assert shares == pytest.approx(1.0)


def test_checkpoints_with_the_losss_copy_of_the_ordering_model_still_load() -> None:
    canon, _ = _counting_canonicalizer()
    module = _module(HyperCUTLoss(), canon)
    state = module.state_dict()
    old = dict(state, **{f"loss.{k}": v for k, v in state.items() if k.startswith("canonicalizer.")})
    checkpoint = {"state_dict": old}
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    assert checkpoint["state_dict"].keys() == state.keys()

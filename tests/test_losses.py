"""Deblurring losses against float64 re-computations, plus their invariances and gradient paths."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from hypercut.losses.deblur import (
    Canonicalizer,
    HyperCUTLoss,
    HyperCUTReleasedLoss,
    NaiveLoss,
    OrderInvariantLoss,
    alpha_schedule,
    charbonnier,
    hypercut_loss,
    hypercut_released_loss,
    naive_loss,
    order_invariant_loss,
    side_penalty,
)


# ----------------------------------------------------------------------------------------------------
# Fake canonicalisers (the real one lives in hypercut.ordering)
# ----------------------------------------------------------------------------------------------------
class BrightnessCanonicalizer(nn.Module):
    """u_k = w * (mean(x_{1+k}) - mean(x_{T-k})): antisymmetric; canonical = u_0 >= 0 ("outer").

    Counts its forward passes in ``calls``.
    """

    def __init__(self, weight: float = 5.0) -> None:
        super().__init__()
        # Deliberately trainable: whoever owns it (the LitModule) must freeze it.
        self.weight = nn.Parameter(torch.tensor(weight))
        self.calls = 0

    def scores(self, pred: Tensor) -> tuple[Tensor, Tensor]:
        self.calls += 1
        k = pred.shape[1] // 2
        means = pred.flatten(2).mean(-1)  # (B, T)
        u = self.weight * (means[:, :k] - means.flip(1)[:, :k])
        return u, -u

    def flips(self, u: Tensor) -> Tensor:
        return u[:, 0] < 0

    def canonicalize(self, sharp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with torch.no_grad():
            u, v = self.scores(sharp)
            flipped = self.flips(u)
        canonical = torch.where(flipped[:, None, None, None, None], sharp.flip(1), sharp)
        return canonical, flipped, torch.where(flipped[:, None], v, u)


class FlipAllCanonicalizer(BrightnessCanonicalizer):
    """Reverses every sample, whatever its scores."""

    def flips(self, u: Tensor) -> Tensor:
        return torch.ones(u.shape[0], dtype=torch.bool)


def _seq(b: int = 2, t: int = 5, h: int = 6, w: int = 7, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, h, w, generator=g)


# ----------------------------------------------------------------------------------------------------
# float64 references, written independently (loops over pairs)
# ----------------------------------------------------------------------------------------------------
def ref_charbonnier(x: Tensor, y: Tensor, eps: float = 1e-3) -> float:
    x, y = x.double(), y.double()
    return float(torch.sqrt((x - y) ** 2 + eps**2).mean())


def ref_order_invariant(pred: Tensor, sharp: Tensor, distance: str, middle: bool = True) -> float:
    p, s = pred.double(), sharp.double()
    t = p.shape[1]
    total = 0.0
    for i in range(t // 2):
        j = t - 1 - i
        e_sum = (p[:, i] + p[:, j]).abs() - (s[:, i] + s[:, j]).abs()
        e_dif = (p[:, i] - p[:, j]).abs() - (s[:, i] - s[:, j]).abs()
        if distance == "l1":
            total += 0.5 * (float(e_sum.abs().mean()) + float(e_dif.abs().mean()))
        else:
            total += 0.5 * (float((e_sum**2).mean()) + float((e_dif**2).mean()))
    if t % 2 == 1 and middle:
        m = t // 2
        if distance == "l1":
            total += ref_charbonnier(p[:, m], s[:, m])
        else:
            total += float(((p[:, m] - s[:, m]) ** 2).mean())
    return total / t


def ref_scores(x: Tensor, weight: float = 5.0) -> Tensor:
    x = x.double()
    t = x.shape[1]
    means = x.flatten(2).mean(-1)
    return torch.stack([weight * (means[:, k] - means[:, t - 1 - k]) for k in range(t // 2)], 1)


# ----------------------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------------------
def test_charbonnier_and_naive_match_float64() -> None:
    p, s = _seq(seed=1), _seq(seed=2)
    assert charbonnier(p, s).item() == pytest.approx(ref_charbonnier(p, s), rel=1e-5)
    assert charbonnier(p, s, eps=0.1).item() == pytest.approx(ref_charbonnier(p, s, 0.1), rel=1e-5)
    assert naive_loss(p, s).item() == pytest.approx(ref_charbonnier(p, s), rel=1e-5)
    assert NaiveLoss()(p, s)["loss"].item() == pytest.approx(ref_charbonnier(p, s), rel=1e-5)
    assert naive_loss(s, s).item() == pytest.approx(1e-3, rel=1e-4)


@pytest.mark.parametrize("t", [2, 4, 5, 7])
@pytest.mark.parametrize("distance", ["l1", "mse"])
def test_order_invariant_matches_float64(t: int, distance: str) -> None:
    p, s = _seq(t=t, seed=3) * 2 - 0.5, _seq(t=t, seed=4)  # predictions outside [0, 1] exercise the |.|
    expected = ref_order_invariant(p, s, distance)
    assert order_invariant_loss(p, s, distance).item() == pytest.approx(expected, rel=1e-5)
    assert OrderInvariantLoss(distance)(p, s)["loss"].item() == pytest.approx(expected, rel=1e-5)
    no_mid = ref_order_invariant(p, s, distance, middle=False)
    assert order_invariant_loss(p, s, distance, supervise_middle=False).item() == pytest.approx(
        no_mid, rel=1e-5
    )


@pytest.mark.parametrize("t", [4, 5, 7])
@pytest.mark.parametrize("distance", ["l1", "mse"])
def test_order_invariant_ignores_ground_truth_direction(t: int, distance: str) -> None:
    p, s = _seq(t=t, seed=5), _seq(t=t, seed=6)
    assert torch.equal(order_invariant_loss(p, s, distance), order_invariant_loss(p, s.flip(1), distance))
    # ... and so does a prediction in the reverse order of the ground truth.
    assert order_invariant_loss(s.flip(1), s, distance).item() == pytest.approx(
        order_invariant_loss(s, s, distance).item()
    )


def test_order_invariant_mse_equals_per_frame_mse_when_ordered() -> None:
    # The documented normalisation: same scale as a per-frame loss.
    # Exact when no pair difference changes sign: first frames dark, last frames bright, small errors.
    s = _seq(t=7, seed=7) * 0.4
    s[:, 4:] += 0.6
    p = s + 0.1 * (_seq(t=7, seed=8) - 0.5)
    per_frame_mse = float(((p.double() - s.double()) ** 2).mean())
    assert order_invariant_loss(p, s, "mse").item() == pytest.approx(per_frame_mse, rel=1e-4)


def test_order_invariant_supervises_middle_frame() -> None:
    s = _seq(t=5, seed=9)
    p = s.clone()
    p[:, 2] += 0.3
    assert order_invariant_loss(p, s, "l1").item() > 0.3 / 5 - 1e-4
    assert order_invariant_loss(p, s, "l1", supervise_middle=False).item() == 0.0


# ----------------------------------------------------------------------------------------------------
# HyperCUT
# ----------------------------------------------------------------------------------------------------
def test_fake_satisfies_protocol() -> None:
    assert isinstance(BrightnessCanonicalizer(), Canonicalizer)


def test_alpha_schedule() -> None:
    assert alpha_schedule(0, 0.2, 100) == 0.0
    assert alpha_schedule(50, 0.2, 100) == pytest.approx(0.1)
    assert alpha_schedule(500, 0.2, 100) == pytest.approx(0.2)
    assert alpha_schedule(None, 0.2, 100) == pytest.approx(0.2)
    assert alpha_schedule(0, 0.2, 0) == pytest.approx(0.2)


@pytest.mark.parametrize("penalty", ["hinge", "softplus"])
@pytest.mark.parametrize("grad", [True, False])
def test_hypercut_flip_all_equals_naive_against_reversed(penalty: str, grad: bool) -> None:
    s = _seq(t=5, seed=11)
    p = _seq(t=5, seed=10).requires_grad_(grad)
    canon = FlipAllCanonicalizer()
    loss = HyperCUTLoss(alpha=0.2, alpha_warmup_steps=0, penalty=penalty, max_reg_grad_ratio=None)
    out = loss(p, s, canonicalizer=canon)
    u = ref_scores(p.detach())
    reg = (torch.relu(-u) if penalty == "hinge" else torch.nn.functional.softplus(-u)).mean()
    expected = ref_charbonnier(p.detach(), s.flip(1)) + 0.2 * float(reg)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert out["recon"].item() == pytest.approx(ref_charbonnier(p.detach(), s.flip(1)), rel=1e-5)
    assert out["reg"].item() == pytest.approx(float(reg), rel=1e-5, abs=1e-7)
    assert out["alpha"].item() == pytest.approx(0.2)
    assert out["flipped"].item() == 1.0
    assert out["pred_wrong_side"].item() == pytest.approx(float((u < 0).double().mean()))
    assert out["gt_score"].item() == pytest.approx(float(ref_scores(s.flip(1)).mean()), rel=1e-5)


def test_hypercut_canonicalises_by_score() -> None:
    s = _seq(b=2, t=5, seed=12)
    s[0, 0] += 1.0  # bright first frame: u_0 > 0, kept
    s[1, -1] += 1.0  # bright last frame: u_0 < 0, reversed
    canon = BrightnessCanonicalizer()
    out = hypercut_loss(s.flip(1), s, canon, alpha=0.0)
    expected_target = torch.stack([s[0], s[1].flip(0)])
    assert out["flipped"].item() == 0.5
    assert out["loss"].item() == pytest.approx(ref_charbonnier(s.flip(1), expected_target), rel=1e-5)
    assert out["gt_score"].item() > 0


def test_hypercut_warmup_scales_only_the_regulariser() -> None:
    p, s = _seq(t=7, seed=13).requires_grad_(True), _seq(t=7, seed=14)
    canon = BrightnessCanonicalizer()
    loss = HyperCUTLoss(alpha=0.2, alpha_warmup_steps=100, penalty="softplus", max_reg_grad_ratio=None)
    at0, mid, full = (loss(p, s, step=step, canonicalizer=canon) for step in (0, 50, None))
    assert at0["loss"].item() == pytest.approx(at0["recon"].item())
    assert at0["alpha"].item() == 0.0
    assert mid["loss"].item() == pytest.approx(mid["recon"].item() + 0.1 * mid["reg"].item(), rel=1e-6)
    assert full["loss"].item() == pytest.approx(full["recon"].item() + 0.2 * full["reg"].item(), rel=1e-6)
    assert at0["reg"].item() == pytest.approx(full["reg"].item())  # diagnostics logged during warm-up too
    (g0,) = torch.autograd.grad(at0["loss"], p)
    (g_rec,) = torch.autograd.grad(charbonnier(p, canon.canonicalize(s)[0]), p)
    torch.testing.assert_close(g0, g_rec)  # nothing from the regulariser during the first step


def test_hinge_is_zero_on_the_canonical_side() -> None:
    u = torch.tensor([[0.5, 2.0], [0.0, 1.0]])
    assert side_penalty(u, "hinge").item() == 0.0
    assert side_penalty(-u, "hinge").item() == pytest.approx((0.5 + 2.0 + 0 + 1.0) / 4)
    assert side_penalty(torch.zeros(1, 1), "softplus").item() == pytest.approx(math.log(2))


def _wrong_side_setup(t: int = 5) -> tuple[Tensor, Tensor]:
    s = _seq(b=3, t=t, seed=15)
    s[:, 0] += 0.5  # kept as stored: the reversed prediction lies on the wrong side, the hinge is active
    pred = (s.flip(1) + 0.05 * _seq(b=3, t=t, seed=16)).requires_grad_(True)
    return pred, s


@pytest.mark.parametrize("weight", [1e-3, 1e4])
def test_hypercut_regulariser_gradient_is_capped(weight: float) -> None:
    pred, s = _wrong_side_setup()
    canon = BrightnessCanonicalizer(weight)
    out = hypercut_loss(pred, s, canon, alpha=0.2, alpha_warmup_steps=0, max_reg_grad_ratio=0.5)
    (g,) = torch.autograd.grad(out["loss"], pred)
    (g_rec,) = torch.autograd.grad(charbonnier(pred, s), pred)
    (g_reg,) = torch.autograd.grad(side_penalty(canon.scores(pred)[0], "hinge"), pred)
    w = out["alpha"].item()
    assert out["reg"].item() > 0 and g_reg.norm() > 0
    if weight > 1:  # huge scores: the cap binds
        assert w < 0.2
        assert (g - g_rec).norm().item() == pytest.approx(0.5 * g_rec.norm().item(), rel=1e-4)
    else:  # small scores: alpha itself
        assert w == pytest.approx(0.2)
        assert (g - g_rec).norm().item() < 0.5 * g_rec.norm().item()
    torch.testing.assert_close(g, g_rec + w * g_reg)
    assert out["loss"].item() == pytest.approx(out["recon"].item() + w * out["reg"].item(), rel=1e-6)


class BatchRecordingCanonicalizer(BrightnessCanonicalizer):
    """Records the batch size of every call made with gradients."""

    def __init__(self, weight: float = 5.0) -> None:
        super().__init__(weight)
        self.grad_batches: list[int] = []

    def scores(self, pred: Tensor) -> tuple[Tensor, Tensor]:
        if torch.is_grad_enabled() and pred.requires_grad:
            self.grad_batches.append(pred.shape[0])
        return super().scores(pred)


@pytest.mark.parametrize("ratio", [0.5, None])
def test_hypercut_hinge_backpropagates_only_the_wrong_side_sequences(ratio: float | None) -> None:
    s = _seq(b=4, t=5, seed=21)
    s[:, 0] += 0.5  # every stored sequence is canonical (u_0 > 0)
    pred = s + 0.05 * _seq(b=4, t=5, seed=22)
    pred[1:3] = pred[1:3].flip(1)  # two of the four predictions are reversed: on the wrong side
    pred.requires_grad_(True)
    canon = BatchRecordingCanonicalizer(1e4).requires_grad_(False)
    out = hypercut_loss(pred, s, canon, alpha=0.2, alpha_warmup_steps=0, max_reg_grad_ratio=ratio)
    (g,) = torch.autograd.grad(out["loss"], pred)
    assert canon.grad_batches == [2]
    # the same value and gradient as the hinge on the whole batch with gradients
    w = out["alpha"].item()
    reference = charbonnier(pred, s) + w * side_penalty(canon.scores(pred)[0], "hinge")
    (g_ref,) = torch.autograd.grad(reference, pred)
    torch.testing.assert_close(g, g_ref)
    assert out["loss"].item() == pytest.approx(reference.item(), rel=1e-6)
    assert out["reg"].item() > 0 and out["pred_wrong_side"].item() > 0


def test_hypercut_hinge_with_every_pair_on_its_side_skips_the_backward_pass() -> None:
    s = _seq(b=3, t=5, seed=23)
    s[:, 0] += 0.5
    pred = (s + 0.01 * _seq(b=3, t=5, seed=24)).requires_grad_(True)
    canon = BatchRecordingCanonicalizer().requires_grad_(False)
    out = hypercut_loss(pred, s, canon, alpha=0.2, alpha_warmup_steps=0)
    assert canon.grad_batches == []
    assert out["reg"].item() == 0.0 and out["pred_wrong_side"].item() == 0.0
    (g,) = torch.autograd.grad(out["loss"], pred)
    torch.testing.assert_close(g, torch.autograd.grad(charbonnier(pred, s), pred)[0])


def test_hypercut_capped_loss_backpropagates_into_a_network() -> None:
    torch.manual_seed(0)
    net = nn.Conv2d(3, 3, 3, padding=1)
    blurry = _seq(b=3, t=1, seed=17)[:, 0]
    s = _seq(b=3, t=5, seed=18)
    s[:, 0] += 0.5
    canon = BrightnessCanonicalizer(1e4)

    def predict() -> Tensor:
        return net(blurry)[:, None].expand(-1, 5, -1, -1, -1) * torch.linspace(2, 0, 5).view(1, 5, 1, 1, 1)

    out = hypercut_loss(predict(), s, canon, alpha=0.2, alpha_warmup_steps=0, max_reg_grad_ratio=0.5)
    out["loss"].backward()
    got = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    # One pass through the ordering model, and only to ``pred``: even an unfrozen one gets no gradient.
    assert canon.weight.grad is None
    w = out["alpha"].item()
    assert 0 < w < 0.2
    pred = predict()
    (charbonnier(pred, s) + w * side_penalty(canon.scores(pred)[0], "hinge")).backward()
    for a, b in zip(got, [p.grad for p in net.parameters()]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("t", [5, 7])
@pytest.mark.parametrize("penalty", ["hinge", "softplus"])
@pytest.mark.parametrize("ratio", [0.5, None])
def test_hypercut_gradients_reach_pred_only(t: int, penalty: str, ratio: float | None) -> None:
    pred, s = _wrong_side_setup(t)
    canon = BrightnessCanonicalizer().requires_grad_(False)  # as the LitModule passes it
    loss = HyperCUTLoss(alpha=0.2, alpha_warmup_steps=0, penalty=penalty, max_reg_grad_ratio=ratio)
    out = loss(pred, s, canonicalizer=canon)
    # the ground truth once (its score is the logged gt_score), the prediction once; the hinge scores
    # the prediction without gradients first, then the sequences on the wrong side with gradients
    assert canon.calls == (3 if penalty == "hinge" else 2)
    assert all(torch.isfinite(v).all() for v in out.values())
    out["loss"].backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert canon.weight.grad is None
    # The regulariser contributes to the gradient.
    pred2 = pred.detach().clone().requires_grad_(True)
    loss.alpha = 0.0
    loss(pred2, s, canonicalizer=canon)["loss"].backward()
    assert not torch.allclose(pred.grad, pred2.grad)


def test_hypercut_released_value_and_sign() -> None:
    p, s = _seq(t=7, seed=17), _seq(t=7, seed=18)
    canon = BrightnessCanonicalizer()
    out = HyperCUTReleasedLoss(alpha=0.2)(p, s, canonicalizer=canon)
    reg = float(torch.nn.functional.softplus(ref_scores(p)).mean())
    expected = ref_order_invariant(p, s, "mse") + 0.2 * reg
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    fn = hypercut_released_loss(p, s, canon, alpha=0.2, distance="l1", supervise_middle=False)
    expected_l1 = ref_order_invariant(p, s, "l1", middle=False) + 0.2 * reg
    assert fn["loss"].item() == pytest.approx(expected_l1, rel=1e-5)
    # The released sign: a prediction with positive scores costs more than its reversal.
    p_pos = p.clone()
    p_pos[:, 0] += 0.5
    assert (
        hypercut_released_loss(p_pos, s, canon)["reg"].item()
        > hypercut_released_loss(p_pos.flip(1), s, canon)["reg"].item()
    )


@pytest.mark.parametrize("t", [5, 7])
def test_all_losses_finite_with_gradients(t: int) -> None:
    s = _seq(t=t, seed=19)
    canon = BrightnessCanonicalizer()
    modules = [
        NaiveLoss(),
        OrderInvariantLoss("l1"),
        OrderInvariantLoss("mse"),
        HyperCUTLoss(),
        HyperCUTReleasedLoss(),
    ]
    for module in modules:
        pred = _seq(t=t, seed=20).requires_grad_(True)
        out = module(pred, s, step=10, canonicalizer=canon)  # the one call every loss module takes
        assert out["loss"].dim() == 0
        assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values()), type(module).__name__
        out["loss"].backward()
        assert pred.grad is not None and torch.isfinite(pred.grad).all()


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        naive_loss(_seq(t=5), _seq(t=7))
    with pytest.raises(ValueError):
        order_invariant_loss(_seq(), _seq(), distance="l2")  # type: ignore[arg-type]


def test_hypercut_loss_with_real_canonicalizer() -> None:
    ordering = pytest.importorskip("hypercut.ordering")
    torch.manual_seed(0)
    encoder = ordering.PairEncoder(width=8, dims=(8, 8), num_res_blocks=1, out_dim=16)
    model = ordering.OrderingModel(encoder, ordering.Hyperplane(16, seed=0))
    canon = ordering.OrderCanonicalizer(model, rule="outer")
    assert isinstance(canon, Canonicalizer)
    s = _seq(b=2, t=5, h=16, w=16, seed=21)
    for penalty in ("hinge", "softplus"):
        pred = _seq(b=2, t=5, h=16, w=16, seed=22).requires_grad_(True)
        out = HyperCUTLoss(alpha_warmup_steps=0, penalty=penalty)(pred, s, canonicalizer=canon)
        out["loss"].backward()
        assert all(torch.isfinite(v) for v in out.values())
        assert pred.grad is not None and torch.isfinite(pred.grad).all()
        assert all(p.grad is None for p in canon.parameters())


@pytest.mark.parametrize("loss", [HyperCUTLoss(), HyperCUTReleasedLoss()])
def test_hypercut_losses_need_a_canonicalizer(loss: nn.Module) -> None:
    assert loss.needs_canonicalizer and not NaiveLoss.needs_canonicalizer
    with pytest.raises(ValueError, match="needs the frozen ordering model"):
        loss(_seq(), _seq())

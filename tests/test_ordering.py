"""Tests of the HyperCUT ordering network, its losses, metrics, canonicaliser and LightningModule."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from ddp_metrics_worker import make_scores
from ordering_synth import moving_disc_sequences
from torch import nn

from hypercut.losses.ordering import (
    HyperCUTOrderingLoss,
    MarginOrderingLoss,
    hypercut_ordering_loss,
    margin_ordering_loss,
)
from hypercut.metrics.ordering import OrderingMetrics, ordering_metric_keys
from hypercut.ordering import (
    RELEASED_LAYOUT,
    Hyperplane,
    MotionPairEncoder,
    OrderCanonicalizer,
    OrderingModel,
    PairEncoder,
    displacement_histogram,
    flip_mask,
    from_released_state_dict,
    load_released_checkpoint,
    pair_indices,
    pair_scores,
)

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def tiny_encoder(**kwargs) -> PairEncoder:
    kw = dict(width=4, dims=(8, 8), num_res_blocks=1, out_dim=8)
    kw.update(kwargs)
    return PairEncoder(**kw)


def tiny_model(antisymmetric: bool = True, seed: int = 0) -> OrderingModel:
    torch.manual_seed(seed)
    return OrderingModel(tiny_encoder(), Hyperplane(8, seed=seed), antisymmetric=antisymmetric)


# ---------------------------------------------------------------- encoder


def test_reference_parameter_count() -> None:
    enc = PairEncoder()
    assert sum(p.numel() for p in enc.parameters()) == 2_315_552
    assert enc.out_dim == 128
    assert sum(p.numel() for p in PairEncoder(compat="released").parameters()) == 2_315_552


def test_encoder_shapes_and_options() -> None:
    assert PairEncoder()(torch.rand(2, 6, 64, 64)).shape == (2, 128)
    enc = tiny_encoder(out_dim=5, activation="gelu")
    assert enc(torch.rand(3, 6, 16, 16)).shape == (3, 5)
    with pytest.raises(ValueError, match="activation"):
        tiny_encoder(activation="nope")
    with pytest.raises(ValueError, match="compat"):
        tiny_encoder(compat="paper")


def test_input_downsample_is_area_pooling_before_the_stem() -> None:
    torch.manual_seed(0)
    pooled = tiny_encoder(input_downsample=2)
    plain = tiny_encoder()
    plain.load_state_dict(pooled.state_dict())  # no parameters of its own: same keys, same count
    x = torch.rand(3, 6, 32, 32)
    with torch.no_grad():
        expected = plain(0.25 * (x[..., ::2, ::2] + x[..., 1::2, ::2] + x[..., ::2, 1::2] + x[..., 1::2, 1::2]))
        torch.testing.assert_close(pooled(x), expected)
    with pytest.raises(ValueError, match="input_downsample"):
        tiny_encoder(input_downsample=0)


def _down_path(enc: PairEncoder, x: torch.Tensor) -> torch.Tensor:
    return enc.down(enc.stem(x))


def test_released_compat_activations_are_identity() -> None:
    torch.manual_seed(0)
    released = tiny_encoder(compat="released")
    acts = [m for m in itertools.chain(released.stem, released.down) if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 1 + len(released.down) // 2
    assert all(a.negative_slope == 1.0 for a in acts)
    # the stem + downsampling path is then affine: f((x + y) / 2) == (f(x) + f(y)) / 2
    x, y = torch.randn(2, 6, 16, 16), torch.randn(2, 6, 16, 16)
    with torch.no_grad():
        mid = _down_path(released, (x + y) / 2)
        torch.testing.assert_close(mid, (_down_path(released, x) + _down_path(released, y)) / 2,
                                   atol=1e-5, rtol=1e-5)
        default = tiny_encoder()
        default.load_state_dict(released.state_dict())
        mid = _down_path(default, (x + y) / 2)
        assert not torch.allclose(mid, (_down_path(default, x) + _down_path(default, y)) / 2, atol=1e-3)


# ---------------------------------------------------------------- hyperplane


def test_hyperplane_buffer_seed_and_device() -> None:
    torch.manual_seed(123)
    hp = Hyperplane(16, seed=7)
    torch.manual_seed(456)
    assert torch.equal(hp.normal, Hyperplane(16, seed=7).normal)  # independent of the global RNG
    assert not torch.equal(hp.normal, Hyperplane(16, seed=8).normal)
    assert hp.normal.abs().max() <= 1 and hp.normal.min() < 0 < hp.normal.max()
    assert list(hp.parameters()) == [] and "normal" in hp.state_dict()
    hp64 = hp.to(torch.float64)
    assert hp64.normal.dtype == torch.float64
    d = torch.randn(5, 16, dtype=torch.float64)
    torch.testing.assert_close(hp64(d), d @ hp64.normal)
    learn = Hyperplane(16, seed=7, learnable=True)
    assert [n for n, _ in learn.named_parameters()] == ["normal"]
    assert torch.equal(learn.normal.detach(), hp.normal)
    with pytest.raises(ValueError):
        hp(torch.randn(5, 15))


# ---------------------------------------------------------------- pair scores


class CountingEncoder(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def test_pair_indices() -> None:
    assert pair_indices(7) == ([0, 1, 2], [6, 5, 4])
    assert pair_indices(4) == ([0, 1], [3, 2])
    assert pair_indices(3) == ([0], [2])
    with pytest.raises(ValueError):
        pair_indices(1)


@pytest.mark.parametrize("num_frames", [3, 4, 7])
@pytest.mark.parametrize("antisymmetric", [False, True])
def test_pair_scores_one_encoder_call(num_frames: int, antisymmetric: bool) -> None:
    torch.manual_seed(0)
    enc = CountingEncoder(tiny_encoder())
    hp = Hyperplane(8, seed=3)
    sharp = torch.rand(2, num_frames, 3, 16, 16)
    with torch.no_grad():
        u, v = pair_scores(enc, hp, sharp, antisymmetric=antisymmetric)
    k = num_frames // 2
    assert enc.calls == 1
    assert u.shape == v.shape == (2, k)
    with torch.no_grad():  # explicit per-pair reference
        for j in range(k):
            a, b = sharp[:, j], sharp[:, num_frames - 1 - j]
            fwd = hp(enc.inner(torch.cat((a, b), 1)))
            rev = hp(enc.inner(torch.cat((b, a), 1)))
            exp_u, exp_v = (fwd - rev, rev - fwd) if antisymmetric else (fwd, rev)
            torch.testing.assert_close(u[:, j], exp_u, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(v[:, j], exp_v, atol=1e-5, rtol=1e-5)
    if antisymmetric:
        assert torch.equal(v, -u)


def test_ordering_model_reverse_negates_antisymmetric_scores() -> None:
    model = tiny_model().eval()
    sharp = torch.rand(3, 7, 3, 16, 16)
    with torch.no_grad():
        u, _ = model(sharp)
        u_rev, _ = model(sharp.flip(1))
    torch.testing.assert_close(u_rev, -u, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- losses


def _loss_reference(u: torch.Tensor, v: torch.Tensor) -> float:
    u, v = u.double().tolist(), v.double().tolist()

    def sp(x: float) -> float:
        return math.log1p(math.exp(-abs(x))) + max(x, 0.0)

    b, k = len(u), len(u[0])
    diff = sum(sp(u[i][j] * v[i][j]) for i in range(b) for j in range(k)) / (b * k)
    pairs = [(i, j, m) for i in range(b) for j in range(k) for m in range(j + 1, k)]
    same = sum(sp(-u[i][j] * u[i][m]) for i, j, m in pairs) / len(pairs) if pairs else 0.0
    return 0.5 * diff + 0.5 * same


def _margin_reference(u: torch.Tensor, v: torch.Tensor, m: float) -> float:
    u, v = u.double().tolist(), v.double().tolist()
    total = 0.0
    for ui, vi in zip(u, v):
        costs = []
        for o in (1.0, -1.0):
            costs.append(0.5 * sum(max(m / 2 - o * a, 0) + max(m / 2 + o * b, 0) for a, b in zip(ui, vi)) / len(ui))
        total += min(costs)
    return total / len(u)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_losses_match_float64_reference(k: int) -> None:
    g = torch.Generator().manual_seed(k)
    u, v = torch.randn(6, k, generator=g) * 2, torch.randn(6, k, generator=g) * 2
    assert hypercut_ordering_loss(u, v).item() == pytest.approx(_loss_reference(u, v), rel=1e-5)
    assert HyperCUTOrderingLoss()(u, v).item() == pytest.approx(_loss_reference(u, v), rel=1e-5)
    for m in (0.5, 1.0, 3.0):
        assert margin_ordering_loss(u, v, m).item() == pytest.approx(_margin_reference(u, v, m), rel=1e-5, abs=1e-7)
        assert MarginOrderingLoss(m)(u, v).item() == pytest.approx(_margin_reference(u, v, m), rel=1e-5, abs=1e-7)


def test_loss_properties() -> None:
    u = torch.tensor([[2.0, 1.0, 3.0], [-1.0, -2.0, -0.6]])
    assert margin_ordering_loss(u, -u, margin=1.0).item() == 0.0  # separated, consistent
    assert margin_ordering_loss(u, u, margin=1.0).item() > 0  # reverse on the same side
    zeros = torch.zeros(4, 3, requires_grad=True)
    assert hypercut_ordering_loss(zeros, zeros).item() == pytest.approx(math.log(2))
    # near u = v = 0 the margin loss pushes a pair and its reverse apart (no flat saddle)
    mu = torch.full((4, 3), 0.02, requires_grad=True)
    mv = torch.full((4, 3), 0.01, requires_grad=True)
    margin_ordering_loss(mu, mv).backward()
    assert (mu.grad < 0).all() and (mv.grad > 0).all()
    assert hypercut_ordering_loss(torch.zeros(3, 1), torch.zeros(3, 1)).item() == pytest.approx(0.5 * math.log(2))
    with pytest.raises(ValueError):
        hypercut_ordering_loss(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError):
        MarginOrderingLoss(0.0)


# ---------------------------------------------------------------- metrics


def _metrics_reference(u: torch.Tensor, v: torch.Tensor) -> dict[str, float]:
    n, k = u.shape

    def sgn(x: float) -> int:
        return (x > 0) - (x < 0)

    ref = {f"hit_k{j + 1}": sum(float(u[i, j]) * float(v[i, j]) < 0 for i in range(n)) / n for j in range(k)}
    ref["hit"] = ref["hit_k1"]
    for c in range(2, k + 1):
        ref[f"con{c}"] = sum(len({sgn(float(x)) for x in u[i, :c]}) == 1 for i in range(n)) / n
    ref["score_abs"] = sum(abs(float(x)) for x in u.flatten().double()) / (n * k)
    ref["score_uv"] = sum(float(a) * float(b) for a, b in zip(u.flatten().double(), v.flatten().double())) / (n * k)
    return ref


def test_metrics_match_reference_and_are_batch_size_independent() -> None:
    u, v = make_scores()
    u, v = u[:7], v[:7]
    ref = _metrics_reference(u, v)
    whole = OrderingMetrics(3)
    whole.update(u, v)
    single = OrderingMetrics(3)
    for i in range(7):
        single.update(u[i : i + 1], v[i : i + 1])
    out_whole, out_single = whole.compute(), single.compute()
    assert list(out_whole) == ordering_metric_keys(3)
    for key in ref:
        assert out_whole[key].item() == pytest.approx(ref[key], rel=1e-6, abs=1e-7), key
        assert out_single[key].item() == pytest.approx(out_whole[key].item(), rel=1e-6, abs=1e-7), key
    # exact ties count as their own sign; hits need a strictly negative product
    m = OrderingMetrics(2)
    m.update(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, -1.0], [-1.0, 1.0]]))
    out = m.compute()
    assert out["hit"].item() == 0.5 and out["hit_k2"].item() == 0.0 and out["con2"].item() == 0.5
    with pytest.raises(ValueError):
        m.update(torch.zeros(2, 3), torch.zeros(2, 3))


def test_metrics_ddp_two_ranks_equal_one_rank(tmp_path: Path) -> None:
    u, v = make_scores()
    local = OrderingMetrics(3)
    local.update(u, v)
    expected = {k: float(x) for k, x in local.compute().items()}
    out = tmp_path / "ddp.json"
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(TESTS / "ddp_metrics_worker.py"), str(out), "2"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key


# ---------------------------------------------------------------- canonicaliser


def test_flip_mask_rules() -> None:
    u = torch.tensor([[-1.0, 2.0, 3.0], [-1.0, -2.0, 3.0], [-1.0, -2.0, -3.0], [1.0, -2.0, -3.0], [0.0, 0.0, 0.0]])
    assert flip_mask(u, "outer").tolist() == [True, True, True, False, False]
    assert flip_mask(u, "vote").tolist() == [False, True, True, True, False]
    assert flip_mask(u, "unanimous").tolist() == [False, False, True, False, False]
    tie = torch.tensor([[-1.0, 1.0], [1.0, -1.0]])
    assert flip_mask(tie, "vote").tolist() == [True, False]  # ties follow the outer pair
    with pytest.raises(ValueError):
        flip_mask(u, "majority")


@pytest.mark.parametrize("rule", ["outer", "vote", "unanimous"])
def test_canonicalizer_idempotent_and_reverse_invariant(rule: str) -> None:
    canon = OrderCanonicalizer(tiny_model(seed=1), rule=rule)
    sharp = torch.rand(12, 7, 3, 16, 16)
    canonical, flipped, u_canonical = canon.canonicalize(sharp)
    assert flipped.dtype == torch.bool and flipped.shape == (12,)
    torch.testing.assert_close(canonical, torch.where(flipped[:, None, None, None, None], sharp.flip(1), sharp))
    assert torch.equal(canon.label(sharp), flipped)
    # The scores returned are those of the canonical sequences, from the one forward pass.
    torch.testing.assert_close(u_canonical, canon.scores(canonical)[0])
    twice, flipped_twice, _ = canon(canonical)
    assert not flipped_twice.any()
    assert torch.equal(twice, canonical)
    from_reverse, _, _ = canon(sharp.flip(1))
    if rule == "unanimous":  # only sequences whose pairs agree have one canonical order
        u, _ = canon.scores(sharp)
        consistent = (u > 0).all(1) | (u < 0).all(1)
        assert consistent.any()
        assert torch.equal(from_reverse[consistent], canonical[consistent])
    else:
        assert torch.equal(from_reverse, canonical)


@pytest.mark.parametrize("antisymmetric", [True, False])
def test_canonicalize_scores_the_ground_truth_once(antisymmetric: bool) -> None:
    model = tiny_model(antisymmetric=antisymmetric, seed=2)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    canon = OrderCanonicalizer(model, rule="outer")
    sharp = torch.rand(6, 7, 3, 16, 16)
    canonical, flipped, u = canon.canonicalize(sharp)
    assert len(calls) == 1 and flipped.any()
    # A reversed sequence's scores are its reverse scores v, also without antisymmetry.
    torch.testing.assert_close(u, canon.scores(canonical)[0])


def test_canonicalizer_frozen_but_differentiable_in_pred() -> None:
    model = tiny_model()
    canon = OrderCanonicalizer(model)
    assert all(not p.requires_grad for p in canon.parameters())
    canon.train()
    assert not canon.training and not model.training and not model.encoder.training
    before = {k: x.clone() for k, x in canon.state_dict().items()}
    pred = torch.rand(2, 7, 3, 16, 16, requires_grad=True)
    F.softplus(-canon.scores(pred)[0]).mean().backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in canon.parameters())
    opt = torch.optim.SGD([pred], lr=1.0)  # a deblurring step never changes the canonicaliser
    opt.step()
    for k, x in canon.state_dict().items():
        assert torch.equal(x, before[k])
    with pytest.raises(ValueError):
        OrderCanonicalizer(tiny_model(), rule="majority")


# ---------------------------------------------------------------- released checkpoints


def _released_state_dict(dims=(64, 128, 128, 128, 128), blocks=6, width=32, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(key: str, cin: int, cout: int, ks: int) -> None:
        sd[f"{key}.weight"] = torch.randn(cout, cin, ks, ks, generator=g) / math.sqrt(cin * ks * ks)
        sd[f"{key}.bias"] = torch.randn(cout, generator=g) * 0.1

    conv("f_func.model.1", 6, width, 7)
    prev = width
    for i, d in enumerate(dims):
        conv(f"f_func.model.{3 + 2 * i}", prev, d, 3)
        prev = d
    for j in range(blocks):
        idx = 3 + 2 * len(dims) + j
        conv(f"f_func.model.{idx}.conv_block.1", prev, prev, 3)
        conv(f"f_func.model.{idx}.conv_block.4", prev, prev, 3)
    sd["hyperplane.hyperplane"] = torch.rand(prev + 1, generator=g) * 2 - 1
    return sd


def _released_scores_float64(sd: dict[str, torch.Tensor], sharp: torch.Tensor, num_down: int, blocks: int):
    w = {k: x.double() for k, x in sd.items()}

    def encode(x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(F.pad(x, (3, 3, 3, 3), mode="reflect"), w["f_func.model.1.weight"], w["f_func.model.1.bias"])
        for i in range(num_down):  # activations are LeakyReLU(slope 1) = identity in the release
            key = f"f_func.model.{3 + 2 * i}"
            x = F.conv2d(x, w[f"{key}.weight"], w[f"{key}.bias"], stride=2, padding=1)
        for j in range(blocks):
            key = f"f_func.model.{3 + 2 * num_down + j}.conv_block"
            y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), w[f"{key}.1.weight"], w[f"{key}.1.bias"])
            y = F.conv2d(F.pad(torch.relu(y), (1, 1, 1, 1), mode="reflect"), w[f"{key}.4.weight"], w[f"{key}.4.bias"])
            x = x + y
        return x.mean(dim=(2, 3))

    hp = w["hyperplane.hyperplane"]
    wv, b = hp[:-1], hp[-1]
    t = sharp.shape[1]
    us, vs = [], []
    for k in range(t // 2):
        a, z = sharp[:, k].double(), sharp[:, t - 1 - k].double()
        for pair, out in ((torch.cat((a, z), 1), us), (torch.cat((z, a), 1), vs)):
            d = encode(pair)
            out.append(d @ wv + b * d.sum(1))  # d . (w + b)
    return torch.stack(us, 1), torch.stack(vs, 1)


def test_released_state_dict_import_matches_float64() -> None:
    sd = _released_state_dict()
    assert {f"{t}.weight" for t, _ in RELEASED_LAYOUT} <= sd.keys()
    assert "f_func.model.13.conv_block.1.weight" in sd
    encoder, hyperplane = from_released_state_dict(sd)
    assert encoder.compat == "released" and sum(p.numel() for p in encoder.parameters()) == 2_315_552
    sharp = torch.rand(2, 5, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    model = OrderingModel(encoder, hyperplane, antisymmetric=False).eval()
    with torch.no_grad():
        u, v = model(sharp)
    ref_u, ref_v = _released_scores_float64(sd, sharp, 5, 6)
    scale = ref_u.abs().max().item()
    torch.testing.assert_close(u.double(), ref_u, atol=1e-4 * scale, rtol=1e-4)
    torch.testing.assert_close(v.double(), ref_v, atol=1e-4 * scale, rtol=1e-4)


def test_released_import_other_depth_prefix_and_errors(tmp_path: Path) -> None:
    sd = _released_state_dict(dims=(8, 8), blocks=2, width=4, seed=2)
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": x for k, x in sd.items()}}
    path = tmp_path / "hypercut.pth"
    torch.save(wrapped, path)
    encoder, hyperplane = load_released_checkpoint(path)
    assert encoder.num_down == 2 and len(encoder.blocks) == 2 and hyperplane.dim == 8
    sharp = torch.rand(2, 7, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        u, v = OrderingModel(encoder, hyperplane, antisymmetric=False)(sharp)
    ref_u, ref_v = _released_scores_float64(sd, sharp, 2, 2)
    torch.testing.assert_close(u.double(), ref_u, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(v.double(), ref_v, atol=1e-4, rtol=1e-4)
    bad = dict(sd)
    del bad["f_func.model.8.conv_block.4.bias"]
    with pytest.raises(KeyError, match="conv_block.4.bias"):
        from_released_state_dict(bad)
    torch.save({"weights": 1}, tmp_path / "other.pth")
    with pytest.raises(KeyError, match="other.pth"):
        load_released_checkpoint(tmp_path / "other.pth")


# ---------------------------------------------------------------- LightningModule


class _Sequences(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        self.sharp = moving_disc_sequences(n, size=16, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return self.sharp.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"sharp": self.sharp[i], "blurry": self.sharp[i].mean(0), "id": f"{i:05d}", "reversed": False}


def test_lit_module_fast_dev_run() -> None:
    import lightning as L

    from hypercut.lit.ordering import OrderingLitModule

    spec = {"_target_": "hypercut.ordering.OrderingModel", "antisymmetric": True}
    lit = OrderingLitModule(tiny_model(), net_spec=spec)
    assert lit.hparams["net_spec"] == spec and lit.hparams["num_frames"] == 7
    loader = torch.utils.data.DataLoader(_Sequences(8, 0), batch_size=4)
    trainer = L.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(lit, loader, loader)
    logged = trainer.callback_metrics
    for key in ["train/loss", "val/loss", "val/hit", "val/con2", "val/con3", "val/hit_k3", "val/score_abs"]:
        assert key in logged, key
    assert logged["val/hit"].item() == 1.0  # antisymmetric: Hit = 1 by construction
    opt = lit.configure_optimizers()
    assert isinstance(opt["optimizer"], torch.optim.Adamax) and opt["optimizer"].defaults["lr"] == 5e-4
    sched = opt["lr_scheduler"]["scheduler"]
    assert sched.step_size == 3 and sched.gamma == 0.9 and opt["lr_scheduler"]["interval"] == "epoch"
    trainer.test(lit, loader, verbose=False)
    assert "test/con3" in trainer.callback_metrics


def test_ordering_study_decays_the_learning_rate_per_step() -> None:
    """experiment=ordering_study: warm-up + cosine stepped per step (its stream has no epochs)."""
    from hydra import compose, initialize_config_module

    from hypercut import tasks

    with initialize_config_module(config_module="hypercut.conf", version_base="1.3"):
        cfg = compose("train", ["experiment=ordering_study", "model.encoder.levels=1"])
    opt = tasks.build_module(cfg).configure_optimizers()
    assert opt["lr_scheduler"]["interval"] == "step"
    sched, lr = opt["lr_scheduler"]["scheduler"], []
    for _ in range(cfg.trainer.max_steps):
        lr.append(opt["optimizer"].param_groups[0]["lr"])
        opt["optimizer"].step()
        sched.step()
    base = cfg.model.optimizer.lr
    assert lr[0] < 0.05 * base and max(lr) == pytest.approx(base) and lr[-1] < 0.06 * base


# ---------------------------------------------------------------- learning


def _con3(model: OrderingModel, data: torch.Tensor) -> float:
    metric = OrderingMetrics(3)
    with torch.no_grad():
        metric.update(*model.eval()(data))
    model.train()
    return metric.compute()["con3"].item()


def test_default_learns() -> None:
    """A few dozen steps of the default formulation on 16x16 moving discs: loss drops, Con@3 rises."""
    torch.manual_seed(0)
    model = OrderingModel(tiny_encoder(width=8, dims=(16, 16, 16), num_res_blocks=1, out_dim=16),
                          Hyperplane(16, seed=0))
    val = moving_disc_sequences(128, size=16, generator=torch.Generator().manual_seed(99))
    untrained = _con3(model, val)
    opt = torch.optim.Adamax(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(80):
        u, v = model(moving_disc_sequences(16, size=16, generator=g))
        loss = hypercut_ordering_loss(u, v)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    trained = _con3(model, val)
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert last < 0.5 * first, (first, last)  # from log 2 (scores ~ 0) to ~0.1
    # an untrained antisymmetric encoder already scores Con@3 ~0.86-0.89 here (the pairs share motion)
    assert trained >= max(untrained + 0.05, 0.93), (untrained, trained)


# ---------------------------------------------------------------- motion encoder


@pytest.mark.parametrize("shift", [(0, 2), (0, -3), (1, 0), (-2, 1)])
def test_displacement_histogram_peaks_at_the_motion_and_mirrors_when_swapped(shift: tuple[int, int]) -> None:
    torch.manual_seed(0)
    r = 3
    x = torch.rand(2, 6, 20, 20)
    moved = torch.roll(x, shifts=shift, dims=(2, 3))  # content moves by (dy, dx)
    forward = displacement_histogram(x, moved, radius=r, scale=50.0)
    backward = displacement_histogram(moved, x, radius=r, scale=50.0)
    side = 2 * r + 1
    expected = (shift[0] + r) * side + (shift[1] + r)
    mirrored = (r - shift[0]) * side + (r - shift[1])
    assert forward.shape == (2, side * side)
    torch.testing.assert_close(forward.sum(dim=1), torch.ones(2))
    assert forward.argmax(dim=1).tolist() == [expected, expected]
    assert backward.argmax(dim=1).tolist() == [mirrored, mirrored]
    with pytest.raises(ValueError, match="too small"):
        displacement_histogram(x[..., :6, :6], moved[..., :6, :6], radius=r, scale=1.0)


def test_displacement_histogram_matches_the_plain_formula_and_its_gradient() -> None:
    torch.manual_seed(0)
    r, scale = 2, 7.0
    a = torch.randn(3, 4, 9, 11, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, 9, 11, dtype=torch.float64, requires_grad=True)

    def plain(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # autograd through slices, as written
        a, b = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
        h, w = a.shape[2:]
        centre = a[:, :, r : h - r, r : w - r]
        sims = torch.stack(
            [(centre * b[:, :, r + dy : h - r + dy, r + dx : w - r + dx]).sum(1)
             for dy in range(-r, r + 1) for dx in range(-r, r + 1)],
            dim=1,
        )
        return torch.softmax(sims * scale, dim=1).mean(dim=(2, 3))

    weights = torch.randn(3, (2 * r + 1) ** 2, dtype=torch.float64)
    got = displacement_histogram(a, b, r, scale)
    torch.testing.assert_close(got, plain(a, b))
    grads = torch.autograd.grad((got * weights).sum(), (a, b))
    expected = torch.autograd.grad((plain(a, b) * weights).sum(), (a, b))
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e)
    assert torch.autograd.gradcheck(lambda x, y: displacement_histogram(x, y, r, scale), (a, b))


def test_motion_encoder_shapes_gradients_and_errors() -> None:
    torch.manual_seed(0)
    enc = MotionPairEncoder(width=4, levels=2, radius=2, out_dim=5, input_downsample=2)
    pair = torch.rand(3, 6, 32, 32)
    out = enc(pair)
    assert out.shape == (3, 5)
    out.square().sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in enc.parameters())
    # the encoding depends on the motion only: the same pair twice gives the same encoding in any batch
    torch.testing.assert_close(enc(pair[1:2]), out[1:2].detach())
    with pytest.raises(ValueError, match="two frames"):
        MotionPairEncoder(in_channels=5)
    with pytest.raises(ValueError, match="radius"):
        MotionPairEncoder(radius=0)
    with pytest.raises(ValueError, match="too small"):
        enc(torch.rand(1, 6, 16, 16))

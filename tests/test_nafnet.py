"""NAFNet-style backbones: shapes, identity at initialisation, the warp decoder's reversal symmetry,
gradients, and weights-file round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hypercut.export import load_pretrained, save_weights, spec_of
from hypercut.losses import BestDirectionLoss, best_direction_loss
from hypercut.models import MotionWarpNet, NAFMultiFrame, load_with_new_blocks
from hypercut.models.nafnet import LayerNorm2d, frame_times

SMALL = {"width": 8, "enc_blocks": (1, 1), "mid_blocks": 1, "dec_blocks": (1, 1)}


@pytest.mark.parametrize("cls", [MotionWarpNet, NAFMultiFrame])
@pytest.mark.parametrize("size", [(16, 16), (23, 37)])
def test_shapes_and_identity_at_init(cls, size) -> None:
    net = cls(num_frames=5, **SMALL)
    blurry = torch.rand(2, 3, *size)
    video = net(blurry)
    assert video.shape == (2, 5, 3, *size)
    assert torch.equal(video[:, 2], blurry)  # the middle frame is the network's own output
    assert torch.allclose(video, blurry.unsqueeze(1).expand_as(video), atol=1e-5)


def test_frame_times_are_centred() -> None:
    tau = frame_times(7)
    assert torch.allclose(tau, -tau.flip(0)) and tau[3] == 0 and torch.isclose(tau[-1], torch.tensor(3 / 7))


def test_layer_norm_matches_torch() -> None:
    x = torch.randn(2, 6, 5, 4)
    ln = LayerNorm2d(6)
    expected = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,), eps=1e-6).permute(0, 3, 1, 2)
    assert torch.allclose(ln(x), expected, atol=1e-5)


def test_warp_decoder_reverses_by_negating_the_odd_terms() -> None:
    torch.manual_seed(0)
    net = MotionWarpNet(num_frames=7, order=2, **SMALL)
    motion = torch.randn(1, 2, 2, 12, 12)
    d = net.displacements(motion)
    reversed_motion = motion.clone()
    reversed_motion[:, 0] *= -1
    assert torch.allclose(net.displacements(reversed_motion), d.flip(1), atol=1e-6)
    assert torch.equal(d[:, 3], torch.zeros_like(d[:, 3]))  # the centre frame is never warped


def test_motion_head_moves_the_outer_frames_only() -> None:
    torch.manual_seed(0)
    net = MotionWarpNet(num_frames=5, **SMALL)
    torch.nn.init.constant_(net.motion_head.bias, 0.5)  # a uniform motion to the right
    blurry = torch.rand(1, 3, 16, 16)
    video = net(blurry)
    assert torch.equal(video[:, 2], blurry)
    assert (video[:, 0] - blurry).abs().mean() > 1e-3
    video.sum().backward()
    assert net.motion_head.weight.grad is not None and net.motion_head.weight.grad.abs().sum() > 0


def test_best_direction_loss_matches_float64_reference() -> None:
    torch.manual_seed(0)
    pred, sharp = torch.rand(3, 5, 3, 4, 4), torch.rand(3, 5, 3, 4, 4)
    pred[1] = sharp[1].flip(0) + 0.01
    loss, flipped = best_direction_loss(pred, sharp, eps=1e-3)
    p, s = pred.double(), sharp.double()
    fwd = torch.sqrt((p - s) ** 2 + 1e-6).mean((1, 2, 3, 4))
    bwd = torch.sqrt((p - s.flip(1)) ** 2 + 1e-6).mean((1, 2, 3, 4))
    assert torch.isclose(loss.double(), torch.minimum(fwd, bwd).mean(), atol=1e-6)
    assert flipped.tolist() == (bwd < fwd).tolist() and flipped[1]
    terms = BestDirectionLoss()(pred, sharp, step=3)
    assert torch.isclose(terms["loss"], loss) and terms["flipped"] == flipped.float().mean()



def test_best_direction_loss_frequency_term_matches_numpy_fft() -> None:
    torch.manual_seed(1)
    pred, sharp = torch.rand(2, 3, 3, 6, 8), torch.rand(2, 3, 3, 6, 8)
    loss, flipped = best_direction_loss(pred, sharp, eps=1e-3, frequency_weight=0.5)
    p, s = pred.double().numpy(), sharp.double().numpy()

    def reference(target: np.ndarray) -> np.ndarray:
        diff = p - target
        spectrum = np.fft.rfft2(diff, norm="ortho")
        freq = np.concatenate([spectrum.real, spectrum.imag], -1)
        return np.sqrt(diff**2 + 1e-6).mean((1, 2, 3, 4)) + 0.5 * np.abs(freq).mean((1, 2, 3, 4))

    fwd, bwd = reference(s), reference(s[:, ::-1])
    assert np.isclose(loss.item(), np.minimum(fwd, bwd).mean(), atol=1e-6)
    assert flipped.tolist() == (bwd < fwd).tolist()
    # the term adds to the plain loss, and the module passes the weight on
    plain, _ = best_direction_loss(pred, sharp, eps=1e-3)
    assert loss > plain
    assert torch.isclose(BestDirectionLoss(frequency_weight=0.5)(pred, sharp)["loss"], loss)
    with pytest.raises(ValueError, match="frequency_weight"):
        BestDirectionLoss(frequency_weight=-1.0)


@pytest.mark.parametrize("frames", [3, 4])
def test_best_direction_loss_centre_term_adds_the_middle_frame_per_direction(frames: int) -> None:
    torch.manual_seed(2)
    pred, sharp = torch.rand(3, frames, 3, 5, 6), torch.rand(3, frames, 3, 5, 6)
    loss, flipped = best_direction_loss(pred, sharp, eps=1e-3, centre_weight=2.0)
    p, s = pred.double().numpy(), sharp.double().numpy()

    def reference(target: np.ndarray) -> np.ndarray:
        error = np.sqrt((p - target) ** 2 + 1e-6)
        return error.mean((1, 2, 3, 4)) + 2.0 * error[:, frames // 2].mean((1, 2, 3))

    fwd, bwd = reference(s), reference(s[:, ::-1])
    assert np.isclose(loss.item(), np.minimum(fwd, bwd).mean(), atol=1e-6)
    assert flipped.tolist() == (bwd < fwd).tolist()
    assert torch.isclose(BestDirectionLoss(centre_weight=2.0)(pred, sharp)["loss"], loss)
    with pytest.raises(ValueError, match="centre_weight"):
        BestDirectionLoss(centre_weight=-0.5)


@pytest.mark.parametrize(
    ("cls", "extra"), [(MotionWarpNet, {}), (MotionWarpNet, {"refine_layers": 1, "refine_width": 8}), (NAFMultiFrame, {})]
)
def test_weights_round_trip(tmp_path, cls, extra) -> None:
    net = cls(num_frames=3, **SMALL, **extra)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.01)
    path = save_weights(net, tmp_path / "w.pt", spec_of(net, num_frames=3, **SMALL, **extra))
    again = load_pretrained(path)
    x = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        assert torch.allclose(again(x), net(x))


def test_warp_sequence_matches_the_reference_warp() -> None:
    from hypercut.models.blocks import warp
    from hypercut.models.nafnet import warp_sequence

    torch.manual_seed(0)
    image = torch.rand(2, 3, 11, 14)
    d = torch.randn(2, 3, 2, 11, 14) * 3
    d[:, 1] = 0
    out = warp_sequence(image, d)
    assert torch.allclose(out[:, 1], image, atol=1e-5)
    for t in (0, 2):
        assert torch.allclose(out[:, t], warp(image, d[:, t]), atol=1e-5)


def test_motion_head_learns_from_its_zero_initialisation() -> None:
    """At initialisation every displacement is exactly zero; the motion head must still get a gradient."""
    torch.manual_seed(0)
    net = MotionWarpNet(num_frames=5, **SMALL)
    blurry = torch.rand(2, 3, 16, 16)
    target = torch.stack([torch.roll(blurry, shifts=k, dims=-1) for k in range(-2, 3)], dim=1)
    assert torch.count_nonzero(net.motion_head.weight) == 0
    torch.nn.functional.mse_loss(net(blurry), target).backward()
    assert net.motion_head.weight.grad.abs().sum() > 0 and net.motion_head.bias.grad.abs().sum() > 0


def test_centre_refiner_starts_as_the_identity_and_learns() -> None:
    """A refiner leaves a net's video unchanged at initialisation, then changes the centre frame it warps."""
    torch.manual_seed(0)
    plain = MotionWarpNet(num_frames=5, **SMALL)
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.05)  # a "trained" net: non-zero heads
    refined = MotionWarpNet(num_frames=5, refine_layers=1, refine_width=8, **SMALL)
    assert load_with_new_blocks(refined, plain.state_dict()) == ["refiner"]
    blurry, target = torch.rand(2, 3, 16, 20), torch.rand(2, 5, 3, 16, 20)
    with torch.no_grad():
        torch.testing.assert_close(refined(blurry), plain(blurry))
    optimizer = torch.optim.Adam(refined.refiner.parameters(), lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(refined(blurry), target).backward()
        optimizer.step()
    with torch.no_grad():
        centre, _ = refined.center_and_motion(blurry)
        plain_centre, _ = plain.center_and_motion(blurry)
    assert (centre - plain_centre).abs().max() > 1e-3
    with pytest.raises(ValueError, match="refine_layers"):
        MotionWarpNet(refine_layers=-1)

"""``SelfEnsemble``: test-time averaging over flips and transposes, aligned in time direction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from hypercut import tasks
from hypercut.export import save_weights, spec_of
from hypercut.models import MotionWarpNet, SelfEnsemble


class Shifts(nn.Module):
    """Frame t is the image shifted right by t - T // 2 pixels: a flip left-right reverses the video."""

    def forward(self, blurry: Tensor) -> Tensor:
        return torch.stack([blurry.roll(t - 2, dims=-1) for t in range(5)], dim=1)


def test_one_pass_is_the_net() -> None:
    net = MotionWarpNet(num_frames=5, width=8, enc_blocks=(1,), dec_blocks=(1,), mid_blocks=1)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        assert torch.equal(SelfEnsemble(net, passes=1)(x), net(x))


def test_a_pass_answering_in_the_other_direction_is_reversed_before_averaging() -> None:
    net, x = Shifts(), torch.rand(3, 3, 12, 16)
    # Flipped left-right, the net's video comes back reversed; aligned, the average is the net's own.
    torch.testing.assert_close(SelfEnsemble(net, passes=2)(x), net(x))
    unaligned = (net(x) + net(x.flip(-1)).flip(-1)) / 2
    assert not torch.allclose(unaligned, net(x), atol=1e-3)


def test_passes_are_averaged_and_shapes_kept() -> None:
    class Ramp(nn.Module):  # not flip-equivariant: output depends on orientation
        def forward(self, blurry: Tensor) -> Tensor:
            ramp = torch.linspace(0, 1, blurry.shape[-1]).view(1, 1, 1, -1)
            return (blurry * 0 + ramp).unsqueeze(1).expand(-1, 3, -1, -1, -1)

    x = torch.rand(1, 3, 10, 10)
    out = SelfEnsemble(Ramp(), passes=8)(x)
    assert out.shape == (1, 3, 3, 10, 10)
    # ramp along x (4 passes, flipped back: x, 1-x, x, 1-x) and along y after a transpose: mean 0.5
    torch.testing.assert_close(out, torch.full_like(out, 0.5))


@pytest.mark.parametrize("passes", [0, 3, 16])
def test_other_pass_counts_are_refused(passes: int) -> None:
    with pytest.raises(ValueError, match="passes must be 1, 2, 4 or 8"):
        SelfEnsemble(Shifts(), passes=passes)
    with pytest.raises(tasks.ConfigError, match=f"self_ensemble={passes}"):
        tasks.with_self_ensemble(Shifts(), passes)


def test_eval_and_infer_take_self_ensemble(tiny_dataset: Path, tmp_path: Path) -> None:
    kwargs = {"num_frames": 7, "width": 8, "enc_blocks": [1], "mid_blocks": 1, "dec_blocks": [1]}
    net = MotionWarpNet(**kwargs)  # type: ignore[arg-type]
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    weights = save_weights(net, tmp_path / "w.pt", spec_of(net, **kwargs))
    base = tasks.evaluate(tasks.compose("eval", [f"data.root={tiny_dataset}", f"weights={weights}"], output_dir=tmp_path / "e1"))
    ens = tasks.evaluate(
        tasks.compose("eval", [f"data.root={tiny_dataset}", f"weights={weights}", "self_ensemble=4"], output_dir=tmp_path / "e4")
    )
    assert ens["test/identity_ppsnr"] == pytest.approx(base["test/identity_ppsnr"])
    assert ens["test/ppsnr"] != pytest.approx(base["test/ppsnr"])  # a different prediction was scored
    blurry = sorted(tiny_dataset.glob("*/blur.png"))[0]
    report = tasks.infer(
        tasks.compose("infer", [f"weights={weights}", f"inputs={blurry}", "formats=[png]", "self_ensemble=2"], output_dir=tmp_path / "v")
    )
    assert not report.failed and len(list((tmp_path / "v").rglob("frame_*.png"))) == 7

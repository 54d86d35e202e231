"""Deblurring backbones (hypercut.models): shapes at odd sizes, gradients, architecture contracts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hypercut.models import (
    ConvLSTMCell,
    JinBlur2Vid,
    MultiFrameUNet,
    PurohitBlur2Vid,
    UNetConvLSTM,
    pad_to_multiple,
    warp,
)

H, W = 67, 93  # odd, and a multiple of none of the paddings (8, 16, 20)


def tiny_jin(t: int) -> nn.Module:
    return JinBlur2Vid(num_frames=t, center_width=8, side_width=8, center_plain_blocks=1,
                       inner_plain_blocks=1, outer_plain_blocks=1, center_dilations=((2, 4),),
                       side_dilations=((2, 4),), center_refine_width=4, side_refine_width=4)


def tiny_purohit(t: int, oracle_center: bool = False) -> PurohitBlur2Vid:
    return PurohitBlur2Vid(num_frames=t, oracle_center=oracle_center, base_channels=4, latent_channels=8,
                           hidden_channels=8, center_base_channels=4, center_depth=2)


def tiny_unet_convlstm(t: int) -> nn.Module:
    return UNetConvLSTM(num_frames=t, base_channels=4, depth=3, max_channels=16)


def tiny_multiframe_unet(t: int) -> nn.Module:
    return MultiFrameUNet(num_frames=t, base_channels=8, depth=3, max_channels=32)


BACKBONES: dict[str, Callable[[int], nn.Module]] = {
    "jin": tiny_jin,
    "purohit": tiny_purohit,
    "unet_convlstm": tiny_unet_convlstm,
    "multiframe_unet": tiny_multiframe_unet,
}


def randomize_zero_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give zero-initialised tensors (residual heads, flow heads, LSTM biases) small random values,
    so that gradients reach every layer and outputs depend on every layer."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    return model


def inference_params(name: str, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    # Purohit's video encoder serves stage 1 only: it is not on the blurry -> video path.
    skip = "video_encoder." if name == "purohit" else None
    return [(n, p) for n, p in model.named_parameters() if skip is None or not n.startswith(skip)]


@pytest.mark.parametrize("t", [5, 7])
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_shape_finite_and_backward(name: str, t: int) -> None:
    torch.manual_seed(0)
    model = randomize_zero_init(BACKBONES[name](t))
    blurry = torch.rand(2, 3, H, W)
    video = model(blurry)
    assert video.shape == (2, t, 3, H, W)
    assert torch.isfinite(video).all()
    video.square().mean().backward()
    for pname, param in inference_params(name, model):
        assert param.grad is not None, f"{name}: {pname} gets no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}: {pname} has a non-finite gradient"
    assert any(p.grad.abs().sum() > 0 for _, p in inference_params(name, model))


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_tiny_image_and_batch_independence(name: str) -> None:
    # Smaller than every padding multiple: the replicate fallback of pad_to_multiple is used.
    torch.manual_seed(0)
    model = randomize_zero_init(BACKBONES[name](5)).eval()
    blurry = torch.rand(3, 3, 5, 7)
    with torch.no_grad():
        video = model(blurry)
        single = model(blurry[1:2])
    assert video.shape == (3, 5, 3, 5, 7)
    torch.testing.assert_close(video[1:2], single, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_rejects_bad_input(name: str) -> None:
    model = BACKBONES[name](5)
    with pytest.raises(ValueError, match="blurry"):
        model(torch.rand(1, 1, 20, 20))


@pytest.mark.parametrize("cls", [JinBlur2Vid, PurohitBlur2Vid])
@pytest.mark.parametrize("t", [1, 2, 4, 6])
def test_centre_based_models_reject_even_or_too_short_t(cls: type[nn.Module], t: int) -> None:
    with pytest.raises(ValueError, match="odd num_frames"):
        cls(num_frames=t)


def test_jin_default_size_matches_reference() -> None:
    n_params = sum(p.numel() for p in JinBlur2Vid().parameters())
    assert abs(n_params - 18.2e6) / 18.2e6 < 0.10, n_params


def test_jin_cascade_order() -> None:
    # Changing a ring's network changes that ring and the rings outside it, never the inner frames.
    torch.manual_seed(0)
    model = randomize_zero_init(tiny_jin(7)).eval()
    blurry = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        before = model(blurry)
        for p in model.outer[0].parameters():  # ring 2: frames 1 and 5 (0-based)
            p.add_(0.1)
        after = model(blurry)
    changed = [(before[:, i] - after[:, i]).abs().max().item() > 1e-6 for i in range(7)]
    assert changed == [True, True, False, False, False, True, True]


def test_jin_middle_frame_is_residual_on_blurry() -> None:
    model = tiny_jin(3).eval()
    with torch.no_grad():
        for p in model.center.refine_out.parameters():
            p.zero_()
        blurry = torch.rand(1, 3, 20, 20)
        assert torch.equal(model(blurry)[:, 1], blurry)


def test_multiframe_unet_untrained_is_identity() -> None:
    blurry = torch.rand(2, 3, H, W)
    for model in (tiny_multiframe_unet(7), MultiFrameUNet(num_frames=5, base_channels=4, depth=1)):
        video = model(blurry)
        assert torch.equal(video, blurry.unsqueeze(1).expand(-1, model.num_frames, -1, -1, -1))


def test_multiframe_unet_channels_last_input() -> None:
    model = randomize_zero_init(tiny_multiframe_unet(5)).eval()
    blurry = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        a = model(blurry)
        b = model.to(memory_format=torch.channels_last)(blurry.to(memory_format=torch.channels_last))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_unet_convlstm_frames_differ_over_time() -> None:
    torch.manual_seed(0)
    model = randomize_zero_init(tiny_unet_convlstm(5)).eval()
    hiddens: list[torch.Tensor] = []
    model.lstm.register_forward_hook(lambda module, args, out: hiddens.append(out[0]))
    with torch.no_grad():
        video = model(torch.rand(1, 3, 32, 32))
    assert len(hiddens) == 5  # one ConvLSTM step per frame
    first, last = hiddens[0], hiddens[-1]
    assert (first - last).abs().mean() > 0.1 * first.abs().mean()
    assert not torch.allclose(video[:, 0], video[:, -1], rtol=0, atol=1e-6)
    untrained = tiny_unet_convlstm(5)
    blurry = torch.rand(1, 3, 21, 30)
    assert torch.equal(untrained(blurry), blurry.unsqueeze(1).expand(-1, 5, -1, -1, -1))


# --- Purohit -----------------------------------------------------------------------------------------

def test_purohit_untrained_repeats_its_centre_estimate() -> None:
    model = tiny_purohit(5).eval()
    blurry = torch.rand(1, 3, H, W)
    with torch.no_grad():
        video = model(blurry)
        center = model.predict_center(blurry)
    assert torch.equal(video, center.unsqueeze(1).expand(-1, 5, -1, -1, -1))


def test_purohit_oracle_center_uses_given_centre() -> None:
    torch.manual_seed(0)
    model = randomize_zero_init(tiny_purohit(7, oracle_center=True)).eval()
    assert model.center_head is None
    blurry, center = torch.rand(2, 3, H, W), torch.rand(2, 3, H, W)
    with torch.no_grad():
        video = model(blurry, center=center)
        other = model(blurry, center=torch.rand(2, 3, H, W))
    assert torch.equal(video[:, 3], center)
    assert (video - other).abs().amax(dim=(0, 2, 3, 4)).min() > 1e-3  # every frame follows the centre
    with pytest.raises(ValueError, match="ground-truth centre"):
        model(blurry)
    with pytest.raises(ValueError, match="only used with oracle_center"):
        tiny_purohit(7)(blurry, center=center)


def test_purohit_stage1_autoencoder_runs_and_backprops() -> None:
    torch.manual_seed(0)
    model = randomize_zero_init(tiny_purohit(5))
    sharp = torch.rand(2, 5, 3, H, W)
    recon = model.forward_autoencoder(sharp)
    assert recon.shape == sharp.shape
    assert torch.equal(recon[:, 2], sharp[:, 2])
    F.l1_loss(recon, sharp).backward()
    for module in (model.video_encoder, model.decoder):
        for pname, param in module.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), pname
    assert all(p.grad is None for p in model.blurry_encoder.parameters())
    # Stage 2 target: the blurry latent has the video latent's shape.
    z_video = model.encode_video(sharp)
    z_blur = model.encode_blurry(sharp.mean(1))
    assert z_blur.shape == z_video.shape == (2, 8, 9, 12)
    F.mse_loss(z_blur, z_video.detach()).backward()
    assert all(p.grad is not None for p in model.blurry_encoder.parameters())


def test_purohit_aux_flows_coarse_to_fine() -> None:
    model = tiny_purohit(5)
    out = model.forward_aux(torch.rand(1, 3, H, W))
    assert [tuple(f.shape) for f in out["flows"]] == [
        (1, 5, 2, 9, 12), (1, 5, 2, 17, 24), (1, 5, 2, 34, 47), (1, 5, 2, H, W)
    ]


# --- blocks -------------------------------------------------------------------------------------------

def test_warp_zero_flow_is_exact_identity() -> None:
    image = torch.rand(2, 3, H, W)
    assert torch.equal(warp(image, torch.zeros(2, 2, H, W)), image)


def test_warp_integer_shift_moves_pixels_and_keeps_borders() -> None:
    image = torch.rand(1, 3, 9, 11)
    flow = torch.zeros(1, 2, 9, 11)
    flow[:, 0] = 2.0  # sample 2 px to the right: content moves left
    out = warp(image, flow)
    assert torch.equal(out[..., :-2], image[..., 2:])
    assert torch.equal(out[..., -2:], image[..., -1:].expand(-1, -1, -1, 2))  # border, not zeros
    flow = torch.zeros(1, 2, 9, 11)
    flow[:, 1] = -1.0  # sample 1 px above: content moves down
    out = warp(image, flow)
    assert torch.equal(out[..., 1:, :], image[..., :-1, :])
    assert torch.equal(out[..., :1, :], image[..., :1, :])


def test_warp_matches_grid_sample_and_backprops() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 13, 17, generator=generator)
    flow = (3 * torch.randn(2, 2, 13, 17, generator=generator)).requires_grad_()
    ys, xs = torch.meshgrid(torch.arange(13.0), torch.arange(17.0), indexing="ij")
    gx = 2 * (xs + flow[:, 0]) / 16 - 1
    gy = 2 * (ys + flow[:, 1]) / 12 - 1
    expected = F.grid_sample(image, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border",
                             align_corners=True)
    out = warp(image, flow)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    out.sum().backward()
    assert flow.grad is not None and torch.isfinite(flow.grad).all() and flow.grad.abs().sum() > 0


def test_pad_to_multiple_reflects_then_replicates() -> None:
    image = torch.arange(12.0).reshape(1, 1, 3, 4)
    padded = pad_to_multiple(image, 6)
    assert padded.shape == (1, 1, 6, 6)
    assert torch.equal(padded[..., :3, :4], image)
    assert torch.equal(pad_to_multiple(image, 2), F.pad(image, (0, 0, 0, 1), mode="reflect"))
    assert pad_to_multiple(image, 1) is image
    video = torch.rand(2, 5, 3, 7, 9)
    assert pad_to_multiple(video, 8).shape == (2, 5, 3, 8, 16)


def test_convlstm_cell_keeps_state() -> None:
    torch.manual_seed(0)
    cell = ConvLSTMCell(3, 6)
    x = torch.rand(2, 3, 5, 7)
    h1, c1 = cell(x)
    h2, c2 = cell(x, (h1, c1))
    assert h1.shape == c1.shape == (2, 6, 5, 7)
    assert not torch.allclose(h1, h2)  # the state carries over between steps
    assert torch.equal(cell.gates.bias[6:12], torch.ones(6))  # forget-gate bias starts at 1


def test_warp_half_precision_keeps_coordinates() -> None:
    image = torch.rand(1, 1, 2, 600).to(torch.bfloat16)
    flow = torch.zeros(1, 2, 2, 600, dtype=torch.bfloat16)
    flow[:, 0] = 1.0
    out = warp(image, flow)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out[..., :-1], image[..., 1:])

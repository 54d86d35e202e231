"""Compact deblurring backbones on NAFNet-style blocks (Chen et al., ECCV 2022).

- :class:`NAFUNet`: the shared trunk, a U-Net of normalised, activation-free blocks at half
  resolution and below.
- :class:`MotionWarpNet`: the default backbone. It predicts one sharp centre frame and a per-pixel
  motion trajectory; every other frame is the centre frame warped along that trajectory, so the
  outer frames are a function of one image and one motion field.
- :class:`CentreRefiner`: optional full-resolution convolutions that sharpen MotionWarpNet's centre frame.
- :class:`NAFMultiFrame`: the same trunk with a head that predicts all ``T`` frames directly (a
  residual per frame), for comparison with the warp decoder.

Both backbones are residual on the blurry input with zero-initialised heads, so the untrained model
returns the blurry image repeated ``T`` times (the identity baseline).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hypercut.models.blocks import crop_to, pad_to_multiple

__all__ = [
    "CentreRefiner",
    "LayerNorm2d",
    "MotionWarpNet",
    "NAFBlock",
    "NAFMultiFrame",
    "NAFUNet",
    "frame_times",
    "load_with_new_blocks",
    "warp_sequence",
]


def frame_times(num_frames: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Times of the ``T`` sharp frames within the exposure, centred: ``(t + 0.5) / T - 0.5``.

    Shape:
        output: :math:`(T,)`, in ``(-0.5, 0.5)``, symmetric about 0.

    Example:
        >>> frame_times(3)
        tensor([-0.3333,  0.0000,  0.3333])
    """
    return (torch.arange(num_frames, device=device, dtype=dtype) + 0.5) / num_frames - 0.5


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channels of every pixel, with a per-channel affine.

    Shape:
        input and output: :math:`(B, C, H, W)`.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # On a channels_last tensor the permuted view is contiguous: one fused layer_norm kernel.
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class NAFBlock(nn.Module):
    """A NAFNet block: two normalised residual branches with gated (multiplicative) non-linearity.

    Branch 1: LayerNorm, 1x1 conv to ``2c``, depthwise 3x3, "simple gate" (split the channels in
    two halves and multiply them), channel attention (global average -> 1x1 conv -> scale), 1x1
    conv. Branch 2: LayerNorm, 1x1 conv to ``2c``, simple gate, 1x1 conv. Each branch is added with
    a learned per-channel scale that starts at zero, so a new block is the identity.

    Args:
        channels: ``c``, the block's width.

    Shape:
        input and output: :math:`(B, c, H, W)`.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.norm1 = LayerNorm2d(c)
        self.expand = nn.Conv2d(c, 2 * c, 1)
        self.depthwise = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.attention = nn.Conv2d(c, c, 1)
        self.project = nn.Conv2d(c, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.ffn_expand = nn.Conv2d(c, 2 * c, 1)
        self.ffn_project = nn.Conv2d(c, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    @staticmethod
    def _gate(x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b

    def forward(self, x: Tensor) -> Tensor:
        y = self._gate(self.depthwise(self.expand(self.norm1(x))))
        y = y * self.attention(y.mean((2, 3), keepdim=True))
        x = x + self.beta * self.project(y)
        y = self.ffn_project(self._gate(self.ffn_expand(self.norm2(x))))
        return x + self.gamma * y


def load_with_new_blocks(net: nn.Module, state: dict[str, Tensor]) -> list[str]:
    """Load ``state`` into ``net``, which may have more :class:`NAFBlock` s per level than its source.

    A network made deeper this way computes exactly what its source did: the blocks that ``state``
    lacks keep their initialisation, the identity (their branch scales start at zero), and sit after
    the loaded blocks of their level. A :class:`CentreRefiner` the source lacks is new in the same way
    (its output convolution starts at zero). Training then starts from the source's quality with more capacity.

    Args:
        net: A freshly built network (its new blocks still at their initialisation).
        state: A ``state_dict`` of the same class with the same widths.

    Returns:
        The names of the blocks that ``state`` did not have, e.g. ``["trunk.middle.4", "refiner"]``.

    Raises:
        RuntimeError: on a shape mismatch, a key ``net`` lacks, or a missing key outside a whole new block.
    """
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected:
        raise RuntimeError(f"keys the network does not have: {unexpected[:5]}")
    # modules that compute the identity at initialisation; a refiner counts as one whole block
    blocks = {name: m for name, m in net.named_modules() if isinstance(m, (NAFBlock, CentreRefiner))}
    new: set[str] = set()
    for key in missing:
        owner = next((name for name in blocks if key.startswith(name + ".")), None)
        if owner is None:
            raise RuntimeError(f"missing key {key!r} is not part of a NAFBlock or CentreRefiner")
        new.add(owner)
    for name in new:
        if any(f"{name}.{k}" in state for k in blocks[name].state_dict()):
            raise RuntimeError(f"block {name!r} is only partly in the weights")
    return sorted(new)


class NAFUNet(nn.Module):
    """U-Net trunk of :class:`NAFBlock` s at half resolution and below.

    The image is pixel-unshuffled by 2, embedded by a 3x3 convolution, encoded by ``len(enc_blocks)``
    levels (blocks, then a 2x2 stride-2 convolution doubling the channels), processed by
    ``mid_blocks`` blocks and decoded symmetrically (1x1 convolution + pixel shuffle, additive skip,
    blocks). The result is the half-resolution feature map of width ``width``.

    Args:
        width: channels at the first level; doubled at each level below.
        enc_blocks: blocks per encoder level (its length is the number of levels).
        mid_blocks: blocks at the bottleneck.
        dec_blocks: blocks per decoder level (same length as ``enc_blocks``).

    Shape:
        - input: :math:`(B, 3, H, W)` with ``H, W`` multiples of :attr:`pad_multiple`
        - output: :math:`(B, width, H / 2, W / 2)`
    """

    def __init__(
        self,
        width: int = 24,
        enc_blocks: tuple[int, ...] = (1, 1, 2),
        mid_blocks: int = 4,
        dec_blocks: tuple[int, ...] = (1, 1, 1),
    ) -> None:
        super().__init__()
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError(f"enc_blocks {enc_blocks} and dec_blocks {dec_blocks} must have the same length")
        self.width = width
        self.pad_multiple = 2 ** (len(enc_blocks) + 1)
        widths = [width * 2**i for i in range(len(enc_blocks) + 1)]
        self.stem = nn.Conv2d(12, width, 3, padding=1)
        self.encoders = nn.ModuleList(
            nn.Sequential(*(NAFBlock(widths[i]) for _ in range(n))) for i, n in enumerate(enc_blocks)
        )
        self.downs = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 2, stride=2) for i in range(len(enc_blocks)))
        self.middle = nn.Sequential(*(NAFBlock(widths[-1]) for _ in range(mid_blocks)))
        self.ups = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i + 1], widths[i] * 4, 1, bias=False), nn.PixelShuffle(2))
            for i in range(len(dec_blocks))
        )
        self.decoders = nn.ModuleList(
            nn.Sequential(*(NAFBlock(widths[i]) for _ in range(n))) for i, n in enumerate(dec_blocks)
        )

    def forward(self, image: Tensor) -> Tensor:
        # channels_last lets oneDNN pick its fast kernels on CPU (depthwise convolutions ~2x); every
        # layer follows its input's layout.
        x = self.stem(F.pixel_unshuffle(image, 2).contiguous(memory_format=torch.channels_last))
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        for i in reversed(range(len(skips))):
            x = self.decoders[i](self.ups[i](x) + skips[i])
        return x


def _check_blurry(blurry: Tensor) -> None:
    if blurry.dim() != 4 or blurry.shape[1] != 3:
        raise ValueError(f"blurry must be (B, 3, H, W), got {tuple(blurry.shape)}")


class CentreRefiner(nn.Module):
    """Full-resolution convolutions that add a residual to a predicted sharp image.

    The trunk of :class:`NAFUNet` works at half resolution and below; this stack of 3x3 convolutions
    and ReLUs sees every pixel of the estimate and of the blurry input, concatenated. Plain
    convolutions, not :class:`NAFBlock` s: at full resolution those cost several times more on a CPU
    (layer norms and gates are memory-bound there). The output convolution starts at zero, so a new
    refiner returns its input unchanged.

    Args:
        width: channels of the hidden layers.
        layers: number of hidden ``width -> width`` convolutions after the first one.

    Shape:
        - estimate, blurry: :math:`(B, 3, H, W)`
        - output: :math:`(B, 3, H, W)`
    """

    def __init__(self, width: int = 16, layers: int = 2) -> None:
        super().__init__()
        hidden: list[nn.Module] = [nn.Conv2d(6, width, 3, padding=1), nn.ReLU()]
        for _ in range(layers):
            hidden += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.hidden = nn.Sequential(*hidden)
        self.head = nn.Conv2d(width, 3, 3, padding=1)
        for param in self.head.parameters():
            nn.init.zeros_(param)

    def forward(self, estimate: Tensor, blurry: Tensor) -> Tensor:
        x = torch.cat((estimate, blurry), dim=1).contiguous(memory_format=torch.channels_last)
        return estimate + self.head(self.hidden(x))


class MotionWarpNet(nn.Module):
    """Sharp centre frame plus a per-pixel motion trajectory; the other frames are warps of the centre.

    A :class:`NAFUNet` trunk feeds one head that gives, at full resolution, a residual for the
    centre frame ``c = B + r`` and a trajectory of ``order`` displacement fields ``m_1..m_order``
    in pixels. Frame ``t`` at time ``tau_t`` (see :func:`frame_times`) is the centre backward-warped
    by ``d_t = sum_k tau_t ** k * m_k``: ``x_t(p) = c(p + d_t(p))``. The reversed sequence is the
    same trajectory with the odd terms negated, so a prediction and its reverse are equally easy to
    express: the order is decided by the sign of ``m_1`` alone.

    The displacement fields are predicted at half resolution and upsampled bilinearly (motion is
    smooth); ``flow_scale`` multiplies the head's raw output so that a few optimiser steps move pixels
    by pixels, not by hundredths. With ``refine_layers > 0`` a :class:`CentreRefiner` sharpens the
    centre frame at full resolution before it is warped.

    Args:
        num_frames: ``T`` (any ``T >= 1``; ``T`` odd puts a frame exactly at the centre).
        width: trunk width (see :class:`NAFUNet`).
        enc_blocks: trunk encoder blocks per level.
        mid_blocks: trunk bottleneck blocks.
        dec_blocks: trunk decoder blocks per level.
        order: terms of the trajectory polynomial (1: straight, constant speed; 2: curved).
        flow_scale: pixels per unit of the head's raw displacement output.
        refine_layers: hidden convolutions of the centre refiner after its first (0: no refiner).
        refine_width: width of the centre refiner.

    Shape:
        - blurry: :math:`(B, 3, H, W)` in [0, 1], any ``H, W``
        - output: :math:`(B, T, 3, H, W)` (not clamped)

    Example:
        >>> model = MotionWarpNet(num_frames=5, width=8, enc_blocks=(1,), dec_blocks=(1,), mid_blocks=1)
        >>> blurry = torch.rand(2, 3, 30, 41)
        >>> video = model(blurry)
        >>> video.shape
        torch.Size([2, 5, 3, 30, 41])
        >>> torch.equal(video, blurry.unsqueeze(1).expand_as(video))  # untrained: identity
        True
    """

    def __init__(
        self,
        num_frames: int = 7,
        width: int = 24,
        enc_blocks: tuple[int, ...] = (1, 1, 2),
        mid_blocks: int = 4,
        dec_blocks: tuple[int, ...] = (1, 1, 1),
        order: int = 2,
        flow_scale: float = 4.0,
        refine_layers: int = 0,
        refine_width: int = 16,
    ) -> None:
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if refine_layers < 0:
            raise ValueError(f"refine_layers must be >= 0, got {refine_layers}")
        self.num_frames = num_frames
        self.order = order
        self.flow_scale = flow_scale
        self.trunk = NAFUNet(width, tuple(enc_blocks), mid_blocks, tuple(dec_blocks))
        self.center_head = nn.Conv2d(width, 3 * 4, 3, padding=1)
        self.motion_head = nn.Conv2d(width, 2 * order, 3, padding=1)
        for param in (*self.center_head.parameters(), *self.motion_head.parameters()):
            nn.init.zeros_(param)
        self.refiner = CentreRefiner(refine_width, refine_layers) if refine_layers else None

    def center_and_motion(self, blurry: Tensor) -> tuple[Tensor, Tensor]:
        """The sharp centre frame and the trajectory coefficients.

        Shape:
            - blurry: :math:`(B, 3, H, W)`
            - centre: :math:`(B, 3, H, W)`
            - motion: :math:`(B, order, 2, H, W)`, in pixels (channel 0 is x, 1 is y)
        """
        _check_blurry(blurry)
        batch, _, height, width = blurry.shape
        padded = pad_to_multiple(blurry, self.trunk.pad_multiple)
        features = self.trunk(padded)
        center = padded + F.pixel_shuffle(self.center_head(features), 2)
        motion = self.motion_head(features) * self.flow_scale
        motion = F.interpolate(motion, scale_factor=2, mode="bilinear", align_corners=False)
        center = crop_to(center, height, width)
        if self.refiner is not None:
            center = self.refiner(center, blurry)
        motion = crop_to(motion, height, width).reshape(batch, self.order, 2, height, width)
        return center, motion

    def displacements(self, motion: Tensor) -> Tensor:
        """Per-frame displacement fields ``d_t = sum_k tau_t ** k * m_k``.

        Shape:
            - motion: :math:`(B, order, 2, H, W)`
            - output: :math:`(B, T, 2, H, W)`
        """
        tau = frame_times(self.num_frames, motion.device, motion.dtype)
        powers = torch.stack([tau ** (k + 1) for k in range(self.order)], dim=1)  # (T, order)
        return torch.einsum("tk,bkchw->btchw", powers, motion)

    def forward(self, blurry: Tensor) -> Tensor:
        center, motion = self.center_and_motion(blurry)
        displacements = self.displacements(motion)
        if self.num_frames % 2 == 0:
            return warp_sequence(center, displacements)
        # The middle frame (tau = 0) is the centre frame itself; only the others are warped.
        mid = self.num_frames // 2
        warped = warp_sequence(center, torch.cat((displacements[:, :mid], displacements[:, mid + 1 :]), dim=1))
        return torch.cat((warped[:, :mid], center.unsqueeze(1), warped[:, mid:]), dim=1)


def warp_sequence(center: Tensor, displacements: Tensor) -> Tensor:
    """Backward-warp one image into ``T`` frames: ``out[:, t](p) = center(p + displacements[:, t](p))``.

    Bilinear sampling with border padding (``F.grid_sample``, about 3x faster on CPU than gathering
    by hand). Gradients reach the displacements everywhere, zero displacements included (a network
    whose motion head starts at zero must be able to leave it).

    Shape:
        - center: :math:`(B, C, H, W)`
        - displacements: :math:`(B, T, 2, H, W)` in pixels (channel 0 is x, 1 is y)
        - output: :math:`(B, T, C, H, W)`
    """
    batch, channels, height, width = center.shape
    frames = displacements.shape[1]
    dtype = torch.promote_types(center.dtype, torch.float32)
    ys = torch.arange(height, device=center.device, dtype=dtype).view(height, 1)
    xs = torch.arange(width, device=center.device, dtype=dtype).view(1, width)
    d = displacements.to(dtype).reshape(batch * frames, 2, height, width)
    grid = torch.stack(
        ((xs + d[:, 0]) * (2 / max(width - 1, 1)) - 1, (ys + d[:, 1]) * (2 / max(height - 1, 1)) - 1), dim=-1
    )
    source = center.unsqueeze(1).expand(batch, frames, channels, height, width).reshape(-1, channels, height, width)
    out = F.grid_sample(source.to(dtype), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(batch, frames, channels, height, width).to(center.dtype)


class NAFMultiFrame(nn.Module):
    """The :class:`NAFUNet` trunk with a head predicting a residual for each of the ``T`` frames.

    Args:
        num_frames: ``T``.
        width: trunk width.
        enc_blocks: trunk encoder blocks per level.
        mid_blocks: trunk bottleneck blocks.
        dec_blocks: trunk decoder blocks per level.

    Shape:
        - blurry: :math:`(B, 3, H, W)` in [0, 1], any ``H, W``
        - output: :math:`(B, T, 3, H, W)` (not clamped)

    Example:
        >>> model = NAFMultiFrame(num_frames=3, width=8, enc_blocks=(1,), dec_blocks=(1,), mid_blocks=1)
        >>> model(torch.rand(1, 3, 20, 24)).shape
        torch.Size([1, 3, 3, 20, 24])
    """

    def __init__(
        self,
        num_frames: int = 7,
        width: int = 24,
        enc_blocks: tuple[int, ...] = (1, 1, 2),
        mid_blocks: int = 4,
        dec_blocks: tuple[int, ...] = (1, 1, 1),
    ) -> None:
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames = num_frames
        self.trunk = NAFUNet(width, tuple(enc_blocks), mid_blocks, tuple(dec_blocks))
        self.head = nn.Conv2d(width, num_frames * 3 * 4, 3, padding=1)
        for param in self.head.parameters():
            nn.init.zeros_(param)

    def forward(self, blurry: Tensor) -> Tensor:
        _check_blurry(blurry)
        batch, _, height, width = blurry.shape
        padded = pad_to_multiple(blurry, self.trunk.pad_multiple)
        delta = F.pixel_shuffle(self.head(self.trunk(padded)), 2)
        delta = crop_to(delta, height, width).reshape(batch, self.num_frames, 3, height, width)
        return blurry.unsqueeze(1) + delta

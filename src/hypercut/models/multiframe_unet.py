"""A fast one-pass U-Net that predicts all T frames at once: the default backbone for speed."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hypercut.models.blocks import ResBlock, crop_to, pad_to_multiple

__all__ = ["MultiFrameUNet"]


class MultiFrameUNet(nn.Module):
    """U-Net with plain residual blocks predicting all ``T`` frames in one pass.

    The blurry image is pixel-unshuffled by 2 (so the whole network runs at half resolution or
    below), encoded by ``depth`` levels of residual blocks with 2x2 stride-2 convolutions doubling the
    channels, decoded with 1x1 convolution + pixel-shuffle upsampling and additive skips, and a final
    3x3 convolution produces ``T * 3 * 4`` channels that are pixel-shuffled back to full resolution.
    The output is residual on the blurry input, ``x_t = B + delta_t``, and the last convolution is
    initialised to zero, so the untrained model returns the blurry image repeated ``T`` times (the
    identity baseline): training starts from it instead of from noise.

    Only convolutions, LeakyReLU, additions and pixel (un)shuffles: it runs well in
    ``channels_last``; the forward pass converts its features to it (about 2x faster than
    contiguous NCHW on CPU). Defaults: 3.51 M parameters (2.4 M of them in the two 256-channel
    bottleneck blocks, which cost little compute), 47 k MACs per pixel at ``T = 7``; about 0.9 s for a
    1280x720 image on two CPU cores (``torch.inference_mode``).

    The input is padded (reflect) to a multiple of ``2 ** (depth + 1)`` and the output cropped back.

    Args:
        num_frames: number of output frames ``T`` (any ``T >= 1``).
        base_channels: channels at the first (half-resolution) level; doubled at each level.
        depth: number of downsampling levels below the first.
        max_channels: cap on the channels of any level.
        enc_blocks: residual blocks per encoder level.
        mid_blocks: residual blocks at the bottleneck.
        dec_blocks: residual blocks per decoder level.

    Shape:
        - blurry: :math:`(B, 3, H, W)` in [0, 1]
        - output: :math:`(B, T, 3, H, W)` (not clamped)

    Example:
        >>> model = MultiFrameUNet(num_frames=5, base_channels=8, depth=2)
        >>> blurry = torch.rand(2, 3, 67, 93)
        >>> video = model(blurry)
        >>> video.shape
        torch.Size([2, 5, 3, 67, 93])
        >>> torch.equal(video, blurry.unsqueeze(1).expand_as(video))  # untrained: identity
        True
    """

    def __init__(
        self,
        num_frames: int = 7,
        base_channels: int = 32,
        depth: int = 3,
        max_channels: int = 256,
        enc_blocks: int = 1,
        mid_blocks: int = 2,
        dec_blocks: int = 1,
    ) -> None:
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.num_frames = num_frames
        self.pad_multiple = 2 ** (depth + 1)
        widths = [min(base_channels * 2**i, max_channels) for i in range(depth + 1)]
        self.stem = nn.Conv2d(3 * 4, widths[0], 3, padding=1)
        self.encoders = nn.ModuleList(
            nn.Sequential(*(ResBlock(widths[i]) for _ in range(enc_blocks))) for i in range(depth)
        )
        self.downs = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 2, stride=2) for i in range(depth))
        self.middle = nn.Sequential(*(ResBlock(widths[depth]) for _ in range(mid_blocks)))
        self.ups = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i + 1], widths[i] * 4, 1), nn.PixelShuffle(2))
            for i in range(depth)
        )
        self.decoders = nn.ModuleList(
            nn.Sequential(*(ResBlock(widths[i]) for _ in range(dec_blocks))) for i in range(depth)
        )
        self.head = nn.Conv2d(widths[0], num_frames * 3 * 4, 3, padding=1)
        for param in self.head.parameters():
            nn.init.zeros_(param)

    def forward(self, blurry: Tensor) -> Tensor:
        if blurry.dim() != 4 or blurry.shape[1] != 3:
            raise ValueError(f"blurry must be (B, 3, H, W), got {tuple(blurry.shape)}")
        batch, _, height, width = blurry.shape
        padded = pad_to_multiple(blurry, self.pad_multiple)
        # channels_last lets oneDNN pick its fast kernels (~2x on CPU); a convolution follows the
        # input's layout, so converting the input is enough even when the weights are contiguous.
        x = self.stem(F.pixel_unshuffle(padded, 2).contiguous(memory_format=torch.channels_last))
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        for i in reversed(range(len(skips))):
            x = self.decoders[i](self.ups[i](x) + skips[i])
        delta = F.pixel_shuffle(self.head(x), 2)
        delta = crop_to(delta, height, width).reshape(batch, self.num_frames, 3, height, width)
        return blurry.unsqueeze(1) + delta

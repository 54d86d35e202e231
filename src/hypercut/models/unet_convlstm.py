"""U-Net with a ConvLSTM at the bottleneck that emits the frames one after another (the design of the
HyperCUT seed summary)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hypercut.models.blocks import ConvLSTMCell, ResBlock, crop_to, pad_to_multiple

__all__ = ["UNetConvLSTM"]


class UNetConvLSTM(nn.Module):
    """U-Net encoder-decoder with a ConvLSTM at the bottleneck emitting one frame per step.

    Encoder: a 3x3 stem and ``depth`` levels of (3x3 stride-2 convolution, residual blocks), the
    channels doubling up to ``max_channels``. A ConvLSTM, fed the bottleneck features and a constant
    channel holding the step's time in [-1, 1] (so that steps differ from the start of training
    rather than only through the slowly growing state) and starting from a zero state, runs ``T``
    steps; each step's hidden state is decoded with the
    encoder's skip connections (2x2 transposed convolutions, concatenation, 1x1 fusion, residual
    blocks) into a frame residual on the blurry input, ``x_t = B + delta_t``. The recurrence is the
    only sequential part: the ``T`` hidden states are decoded as one batch. The last convolution
    starts at zero, so the untrained model returns the blurry image repeated ``T`` times.

    Defaults: 10.6 M parameters (4.7 M of them in the ConvLSTM), ~0.85 M MACs per pixel at ``T = 7``
    (the full-resolution decoder runs once per frame).

    The input is padded (reflect) to a multiple of ``2 ** depth`` and the output cropped back.

    Args:
        num_frames: number of output frames ``T`` (any ``T >= 1``).
        base_channels: channels at full resolution, doubled at each level.
        depth: number of stride-2 levels.
        max_channels: cap on the channels of any level.
        blocks_per_level: residual blocks per encoder and per decoder level.
        hidden_channels: ConvLSTM state channels (default: the bottleneck channels).

    Shape:
        - blurry: :math:`(B, 3, H, W)` in [0, 1]
        - output: :math:`(B, T, 3, H, W)` (not clamped)

    Example:
        >>> model = UNetConvLSTM(num_frames=5, base_channels=4, depth=2)
        >>> model(torch.rand(1, 3, 21, 30)).shape
        torch.Size([1, 5, 3, 21, 30])
    """

    def __init__(
        self,
        num_frames: int = 7,
        base_channels: int = 32,
        depth: int = 4,
        max_channels: int = 256,
        blocks_per_level: int = 1,
        hidden_channels: int | None = None,
    ) -> None:
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.num_frames = num_frames
        self.pad_multiple = 2**depth
        widths = [min(base_channels * 2**i, max_channels) for i in range(depth + 1)]
        hidden = hidden_channels or widths[depth]

        def blocks(channels: int) -> nn.Sequential:
            return nn.Sequential(*(ResBlock(channels) for _ in range(blocks_per_level)))

        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
                                  blocks(widths[0]))
        self.downs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1),
                          nn.LeakyReLU(0.1, inplace=True), blocks(widths[i + 1]))
            for i in range(depth)
        )
        self.lstm = ConvLSTMCell(widths[depth] + 1, hidden)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(hidden if i == depth - 1 else widths[i + 1], widths[i], 2, stride=2)
            for i in range(depth)
        )
        self.fuses = nn.ModuleList(nn.Conv2d(2 * widths[i], widths[i], 1) for i in range(depth))
        self.decoders = nn.ModuleList(blocks(widths[i]) for i in range(depth))
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.head = nn.Conv2d(widths[0], 3, 3, padding=1)
        for param in self.head.parameters():
            nn.init.zeros_(param)

    def forward(self, blurry: Tensor) -> Tensor:
        if blurry.dim() != 4 or blurry.shape[1] != 3:
            raise ValueError(f"blurry must be (B, 3, H, W), got {tuple(blurry.shape)}")
        batch, _, height, width = blurry.shape
        t = self.num_frames
        padded = pad_to_multiple(blurry, self.pad_multiple)
        x = self.stem(padded)
        skips = [x]
        for down in self.downs:
            x = down(x)
            skips.append(x)
        state = None
        hiddens = []
        times = torch.linspace(-1.0, 1.0, t) if t > 1 else torch.zeros(1)
        for step in times.tolist():
            state = self.lstm(torch.cat([x, x.new_full((batch, 1, *x.shape[-2:]), step)], dim=1), state)
            hiddens.append(state[0])
        # (B, T, C, h, w) -> (B * T, C, h, w), frame-major within each sample.
        y = torch.stack(hiddens, dim=1).flatten(0, 1)
        for i in reversed(range(len(self.ups))):
            skip = skips[i].unsqueeze(1).expand(-1, t, -1, -1, -1).flatten(0, 1)
            y = self.act(self.fuses[i](torch.cat([self.ups[i](y), skip], dim=1)))
            y = self.decoders[i](y)
        delta = self.head(y).unflatten(0, (batch, t))
        return blurry.unsqueeze(1) + crop_to(delta, height, width)

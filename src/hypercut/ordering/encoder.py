"""The HyperCUT pair encoder H: a pair of frames (6 channels) -> a vector in R^D."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["PairEncoder", "ResidualBlock", "make_activation"]

_ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu", "identity")


def make_activation(name: str, negative_slope: float = 0.2) -> nn.Module:
    """Builds an activation module by name.

    Args:
        name: One of ``"relu"``, ``"leaky_relu"``, ``"gelu"``, ``"silu"``, ``"identity"``.
        negative_slope: Slope of ``"leaky_relu"`` for negative inputs.

    Returns:
        A fresh activation module (never in-place, so autograd through a frozen encoder is safe).
    """
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU()
    if name == "identity":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; expected one of {_ACTIVATIONS}")


class ResidualBlock(nn.Module):
    """``x + Conv3x3(ReLU(Conv3x3(x)))`` with reflection padding and biases, no normalisation.

    Args:
        channels: Number of input and output channels.

    Shape:
        - Input: ``(N, channels, H, W)`` with ``H, W >= 2`` (reflection padding of 1).
        - Output: same as the input.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pad1 = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3)
        self.act = nn.ReLU()
        self.pad2 = nn.ReflectionPad2d(1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.pad2(self.act(self.conv1(self.pad1(x)))))


class PairEncoder(nn.Module):
    """Pair encoder H of HyperCUT (the reference "ResnetIm2Vec" CNN of the paper).

    A pair of frames concatenated on channels is mapped to a vector:
    optional ``AvgPool(input_downsample)``, ``ReflectionPad(3) + Conv7x7(in_channels -> width) + act``,
    then one stride-2 ``Conv3x3`` (zero padding 1) + act per entry of ``dims``, then
    ``num_res_blocks`` :class:`ResidualBlock` at ``dims[-1]`` channels, then global average pooling. Every convolution has a bias; there is no
    normalisation layer. With the defaults this has exactly 2,315,552 parameters.

    ``compat="released"`` reproduces the authors' released network, whose stem/downsampling
    activations are ``LeakyReLU(True)`` -- a negative slope of 1.0, i.e. the identity (``inplace`` was
    meant) -- so their checkpoints give their scores (see
    :func:`hypercut.ordering.from_released_state_dict`). It overrides ``activation``. The residual
    blocks use a real ReLU in both variants.

    The network does not normalise its input: frames go in as given (``[0, 1]`` in this library).

    Args:
        in_channels: Channels of the pair (2 x 3 for RGB frames).
        width: Output channels of the 7x7 stem convolution.
        dims: Output channels of the stride-2 downsampling convolutions, in order.
        num_res_blocks: Number of residual blocks at ``dims[-1]`` channels.
        out_dim: Output dimension D. ``None`` or ``dims[-1]`` (the reference) uses the pooled features
            directly; any other value adds a ``Linear(dims[-1], out_dim)`` projection.
        activation: Activation after the stem and each downsampling convolution (see
            :func:`make_activation`).
        negative_slope: Negative slope when ``activation="leaky_relu"``.
        compat: ``None`` or ``"released"`` (slope-1.0 "LeakyReLU" = identity, as released).
        input_downsample: Average-pool the pair by this factor before the stem (1 = off, the
            reference). No parameters; 2 makes a step about 4x cheaper, and on 64x64 synthetic data
            the small encoder reaches a higher Con@3 in a CPU budget with 2 than with 1
            (docs/RESULTS.md).

    Shape:
        - Input: ``(N, in_channels, H, W)``; the last feature map must be at least 2x2, i.e.
          ``H, W >= input_downsample * 2 ** (len(dims) + 1)`` (64 for the reference configuration).
        - Output: ``(N, D)`` with ``D = out_dim or dims[-1]``.

    Example:
        >>> import torch
        >>> enc = PairEncoder()
        >>> sum(p.numel() for p in enc.parameters())
        2315552
        >>> enc(torch.rand(2, 6, 64, 64)).shape
        torch.Size([2, 128])
    """

    def __init__(
        self,
        in_channels: int = 6,
        width: int = 32,
        dims: Sequence[int] = (64, 128, 128, 128, 128),
        num_res_blocks: int = 6,
        out_dim: int | None = 128,
        activation: str = "leaky_relu",
        negative_slope: float = 0.2,
        compat: str | None = None,
        input_downsample: int = 1,
    ) -> None:
        super().__init__()
        if compat not in (None, "released"):
            raise ValueError(f"compat must be None or 'released', got {compat!r}")
        if len(dims) == 0:
            raise ValueError("dims must name at least one downsampling convolution")
        if input_downsample < 1:
            raise ValueError(f"input_downsample must be >= 1, got {input_downsample}")
        dims = tuple(int(d) for d in dims)
        self.compat = compat
        self.input_downsample = int(input_downsample)
        self.num_down = len(dims)

        def act() -> nn.Module:
            if compat == "released":
                return nn.LeakyReLU(negative_slope=1.0)
            return make_activation(activation, negative_slope)

        self.pre: nn.Module = (
            nn.AvgPool2d(self.input_downsample) if self.input_downsample > 1 else nn.Identity()
        )
        self.stem = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, kernel_size=7), act()
        )
        layers: list[nn.Module] = []
        prev = width
        for d in dims:
            layers += [nn.Conv2d(prev, d, kernel_size=3, stride=2, padding=1), act()]
            prev = d
        self.down = nn.Sequential(*layers)
        self.blocks = nn.Sequential(*(ResidualBlock(prev) for _ in range(num_res_blocks)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head: nn.Module = (
            nn.Identity() if out_dim is None or out_dim == prev else nn.Linear(prev, out_dim)
        )
        self.out_dim = prev if out_dim is None else int(out_dim)

    def forward(self, pair: Tensor) -> Tensor:
        x = self.blocks(self.down(self.stem(self.pre(pair))))
        return self.head(self.pool(x).flatten(1))

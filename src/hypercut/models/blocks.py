"""Building blocks shared by the deblurring backbones.

Everything here is a plain function or ``nn.Module`` over torch only: padding to the multiple an
architecture needs (and cropping back), residual blocks, a convolutional LSTM cell and a flow warp.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ConvLSTMCell",
    "InstanceNormResBlock",
    "ResBlock",
    "crop_to",
    "pad_to_multiple",
    "warp",
]


def pad_to_multiple(image: Tensor, multiple: int) -> Tensor:
    """Pad the last two dimensions at the bottom/right up to a multiple of ``multiple``.

    Reflection padding is used where it is defined (the pad is smaller than the side), replicate
    padding otherwise (tiny images), so the padded border always continues the image content.

    Args:
        image: tensor whose last two dimensions are ``(H, W)``; any leading dimensions.
        multiple: the side lengths of the result are multiples of this.

    Returns:
        The padded tensor (the input itself when nothing needs padding).

    Shape:
        - image: :math:`(*, H, W)`
        - output: :math:`(*, H', W')` with ``H' = ceil(H / multiple) * multiple``, same for ``W'``.

    Example:
        >>> pad_to_multiple(torch.rand(1, 3, 67, 93), 20).shape
        torch.Size([1, 3, 80, 100])
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    height, width = image.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return image
    lead = image.shape[:-2]
    flat = image.reshape(-1, 1, height, width) if image.dim() != 4 else image
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    padded = F.pad(flat, (0, pad_w, 0, pad_h), mode=mode)
    return padded.reshape(*lead, height + pad_h, width + pad_w)


def crop_to(image: Tensor, height: int, width: int) -> Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``height x width`` of the last two dimensions.

    Shape:
        - image: :math:`(*, H', W')`
        - output: :math:`(*, height, width)`

    Example:
        >>> crop_to(torch.rand(1, 7, 3, 80, 100), 67, 93).shape
        torch.Size([1, 7, 3, 67, 93])
    """
    return image[..., :height, :width]


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Backward-warp ``image`` by a dense ``flow`` in pixels: ``out[y, x] = image[y + v, x + u]``.

    Bilinear sampling with border padding and ``align_corners=True`` semantics, i.e. the same
    result as ``F.grid_sample(image, grid, mode="bilinear", padding_mode="border",
    align_corners=True)`` with ``grid`` the normalised ``base + flow``. It is computed directly in
    pixel coordinates instead because grid_sample's normalise/unnormalise round trip is not exact
    in float32 (an identity grid moves pixels by up to ~6e-5 at 1280 px width). Here a zero flow is
    *exactly* the identity, and samples outside the image take the nearest border pixel, so borders
    are never blanked. Differentiable with respect to both ``image`` and ``flow``.

    Args:
        image: images to warp.
        flow: per-pixel displacement in pixels; channel 0 is horizontal (x, to the right),
            channel 1 vertical (y, downwards).

    Returns:
        The warped images.

    Shape:
        - image: :math:`(B, C, H, W)`
        - flow: :math:`(B, 2, H, W)`
        - output: :math:`(B, C, H, W)`

    Example:
        >>> image = torch.rand(1, 3, 8, 8)
        >>> torch.equal(warp(image, torch.zeros(1, 2, 8, 8)), image)
        True
    """
    if image.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"warp expects image (B,C,H,W) and flow (B,2,H,W), got {tuple(image.shape)} "
                         f"and {tuple(flow.shape)}")
    if flow.shape[0] != image.shape[0] or flow.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"warp: flow {tuple(flow.shape)} does not match image {tuple(image.shape)}")
    batch, channels, height, width = image.shape
    # Coordinates in at least float32: bf16/fp16 cannot even represent pixel indices above 256/2048.
    dtype = torch.promote_types(image.dtype, torch.float32)
    flow = flow.to(dtype)
    ys = torch.arange(height, device=image.device, dtype=dtype).view(1, height, 1)
    xs = torch.arange(width, device=image.device, dtype=dtype).view(1, 1, width)
    x = (xs + flow[:, 0]).clamp(0, width - 1)
    y = (ys + flow[:, 1]).clamp(0, height - 1)
    x0 = x.floor()
    y0 = y.floor()
    wx = (x - x0).unsqueeze(1)
    wy = (y - y0).unsqueeze(1)
    x0i = x0.long()
    y0i = y0.long()
    x1i = (x0i + 1).clamp(max=width - 1)
    y1i = (y0i + 1).clamp(max=height - 1)
    flat = image.reshape(batch, channels, height * width)

    def gather(yi: Tensor, xi: Tensor) -> Tensor:
        index = (yi * width + xi).reshape(batch, 1, height * width).expand(batch, channels, -1)
        return flat.gather(2, index).reshape(batch, channels, height, width)

    top = gather(y0i, x0i) * (1 - wx) + gather(y0i, x1i) * wx
    bottom = gather(y1i, x0i) * (1 - wx) + gather(y1i, x1i) * wx
    return (top * (1 - wy) + bottom * wy).to(image.dtype)


class ResBlock(nn.Module):
    """Plain residual block ``x + conv(act(conv(x)))`` with 3x3 convolutions, no normalisation.

    Only convolutions, an element-wise activation and an addition, so it runs well in
    ``channels_last`` on CPU (oneDNN) and GPU.

    Args:
        channels: input and output channels.
        negative_slope: LeakyReLU slope of the activation between the convolutions.

    Shape:
        - input: :math:`(B, C, H, W)`
        - output: :math:`(B, C, H, W)`

    Example:
        >>> ResBlock(8)(torch.rand(2, 8, 5, 7)).shape
        torch.Size([2, 8, 5, 7])
    """

    def __init__(self, channels: int, negative_slope: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(negative_slope, inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class InstanceNormResBlock(nn.Module):
    """Pre-activation residual block with instance normalisation, as in Jin et al. (CVPR 2018).

    ``y = x + conv3x3_d2(relu(IN(conv3x3_d1(a)))) + conv1x1(a)`` with ``a = relu(IN(x))``: two
    (optionally dilated) 3x3 convolutions on the main branch and a 1x1 convolution on a side
    branch, all without bias (instance normalisation removes it anyway).

    Args:
        channels: input and output channels.
        dilation: dilations of the two 3x3 convolutions, ``(1, 1)`` for a plain block.

    Shape:
        - input: :math:`(B, C, H, W)`
        - output: :math:`(B, C, H, W)`

    Example:
        >>> InstanceNormResBlock(8, dilation=(2, 4))(torch.rand(2, 8, 12, 12)).shape
        torch.Size([2, 8, 12, 12])
    """

    def __init__(self, channels: int, dilation: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        d1, d2 = dilation
        self.norm_in = nn.InstanceNorm2d(channels, affine=True)
        self.norm_mid = nn.InstanceNorm2d(channels, affine=True)
        self.act = nn.ReLU()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=d1, dilation=d1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=d2, dilation=d2, bias=False)
        self.side = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a = self.act(self.norm_in(x))
        main = self.conv2(self.act(self.norm_mid(self.conv1(a))))
        return x + main + self.side(a)


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM cell (Shi et al., 2015) without peephole connections.

    All four gates come from one convolution over ``[x, h]``. The forget-gate bias starts at 1 so the
    cell keeps its memory early in training.

    Args:
        input_channels: channels of the input ``x``.
        hidden_channels: channels of the hidden and cell states.
        kernel_size: odd spatial size of the gate convolution.

    Shape:
        - x: :math:`(B, C_{in}, H, W)`
        - state: ``None`` (zeros) or a pair ``(h, c)`` of :math:`(B, C_{hid}, H, W)`
        - output: the new ``(h, c)``, each :math:`(B, C_{hid}, H, W)`

    Example:
        >>> cell = ConvLSTMCell(4, 8)
        >>> h, c = cell(torch.rand(2, 4, 6, 6))
        >>> h, c = cell(torch.rand(2, 4, 6, 6), (h, c))
        >>> h.shape
        torch.Size([2, 8, 6, 6])
    """

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(input_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                               padding=kernel_size // 2)
        bias = self.gates.bias
        assert bias is not None
        with torch.no_grad():
            bias.zero_()
            bias[hidden_channels:2 * hidden_channels].fill_(1.0)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[-2:])
            state = (zeros, zeros)
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

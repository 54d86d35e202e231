"""A pair encoder that sees only how the first frame moves to the second: a correlation volume."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from hypercut.ordering.encoder import make_activation

__all__ = ["MotionPairEncoder", "displacement_histogram"]


def displacement_histogram(a: Tensor, b: Tensor, radius: int, scale: Tensor | float) -> Tensor:
    """How often each displacement takes a feature of ``a`` to the matching feature of ``b``.

    For every pixel ``p`` of ``a`` away from the border (``radius`` pixels), the cosine similarities
    ``<a(p), b(p + d)>`` over the ``(2 radius + 1)^2`` displacements ``d = (dy, dx)`` go through a
    softmax (times ``scale``), and the result is averaged over pixels: a distribution over ``d``.
    Swapping ``a`` and ``b`` mirrors it (``d -> -d``) up to the border.

    Args:
        a: Features of the first frame.
        b: Features of the second frame.
        radius: Largest displacement tried along each axis, in pixels of the features.
        scale: Inverse softmax temperature.

    Returns:
        The distribution, entries ordered by ``dy`` then ``dx`` (row-major), each from ``-radius``.

    Shape:
        - a, b: ``(N, C, H, W)`` with ``H, W > 2 * radius``.
        - Output: ``(N, (2 radius + 1) ** 2)``, rows summing to 1.

    Example:
        >>> x = torch.rand(1, 4, 12, 12)
        >>> moved = torch.roll(x, shifts=(0, 2), dims=(2, 3))  # content moves 2 px right
        >>> hist = displacement_histogram(x, moved, radius=2, scale=100.0)
        >>> int(hist.argmax()) == 2 * 5 + 4  # dy = 0, dx = +2
        True
    """
    _, _, h, w = a.shape
    r = int(radius)
    if h <= 2 * r or w <= 2 * r:
        raise ValueError(f"features of {h}x{w} are too small for a displacement radius of {r}")
    sims = _Correlation.apply(F.normalize(a, dim=1), F.normalize(b, dim=1), r)
    weights = torch.softmax(sims * scale, dim=1)  # (N, D, H', W')
    return weights.mean(dim=(2, 3))


def _windows(h: int, w: int, r: int) -> list[tuple[slice, slice]]:
    """The ``(rows, cols)`` slices of ``b`` matched to the centre of ``a``, one per displacement."""
    return [
        (slice(r + dy, h - r + dy), slice(r + dx, w - r + dx)) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
    ]


class _Correlation(torch.autograd.Function):
    """``sims[n, i, y, x] = <a[n, :, y + r, x + r], b[n, :, y + r + dy_i, x + r + dx_i]>`` with a
    backward pass that accumulates into two gradient buffers in place (autograd's own would allocate a
    full-size zero tensor per displacement for the slices: about 1.5x slower on a CPU).

    Shape:
        - a, b: ``(N, C, H, W)``.
        - Output: ``(N, (2r + 1) ** 2, H - 2r, W - 2r)``.
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, r: int) -> Tensor:
        n, _, h, w = a.shape
        centre = a[:, :, r : h - r, r : w - r]
        sims = a.new_empty(n, (2 * r + 1) ** 2, h - 2 * r, w - 2 * r)
        for i, (rows, cols) in enumerate(_windows(h, w, r)):
            torch.sum(centre * b[:, :, rows, cols], dim=1, out=sims[:, i])
        ctx.save_for_backward(a, b)
        ctx.r = r
        return sims

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        a, b = ctx.saved_tensors
        r = ctx.r
        h, w = a.shape[2:]
        grad_a, grad_b = torch.zeros_like(a), torch.zeros_like(b)
        centre, grad_centre = a[:, :, r : h - r, r : w - r], grad_a[:, :, r : h - r, r : w - r]
        for i, (rows, cols) in enumerate(_windows(h, w, r)):
            g = grad[:, i : i + 1]
            grad_centre.addcmul_(g, b[:, :, rows, cols])
            grad_b[:, :, rows, cols].addcmul_(g, centre)
        return grad_a, grad_b, None


class MotionPairEncoder(nn.Module):
    """Pair encoder H whose encoding is a function of the motion between the two frames only.

    Both frames go through the same small CNN (``Conv3x3(3 -> width) + act + Conv3x3(width -> width)``,
    reflection padding, full resolution). At each of ``levels`` scales (features average-pooled by 1,
    2, 4, ...) a :func:`displacement_histogram` of radius ``radius`` says which displacements take the
    first frame's features to the second's; the histograms are concatenated and a linear map gives the
    encoding. The content of the frames enters only through how sharply it matches, so for a camera
    pan the side of the hyperplane a pair falls on is a function of the pan's direction (and speed):
    something a deblurring network can read off the blur. The HyperCUT loss, which puts every
    symmetric pair of a sequence (displacements ``d``, ``2d/3``, ``d/3`` for a steady pan) on one
    side, then asks that side to be constant along each direction.

    Args:
        in_channels: Channels of the pair (2 x 3 for RGB frames); split in half into the two frames.
        width: Feature channels.
        levels: Number of scales; level ``l`` sees displacements up to ``radius * 2**l`` pixels of the
            input after ``input_downsample``.
        radius: Displacements tried per axis at each level, in pixels of that level.
        out_dim: Output dimension D.
        activation: Activation of the feature CNN (see :func:`make_activation`).
        temperature: Initial inverse softmax temperature of the histograms (learned, in log space).
        input_downsample: Average-pool the frames by this factor first (1 = off). 2 makes a step about
            4x cheaper; sub-pixel motion then shows only in the shape of the histogram around zero.

    Shape:
        - Input: ``(N, in_channels, H, W)`` with ``H, W > input_downsample * 2 ** levels * radius``.
        - Output: ``(N, out_dim)``.

    Example:
        >>> enc = MotionPairEncoder(width=8, levels=2, radius=2, out_dim=16)
        >>> enc(torch.rand(3, 6, 32, 32)).shape
        torch.Size([3, 16])
    """

    def __init__(
        self,
        in_channels: int = 6,
        width: int = 16,
        levels: int = 3,
        radius: int = 3,
        out_dim: int = 64,
        activation: str = "leaky_relu",
        temperature: float = 10.0,
        input_downsample: int = 1,
    ) -> None:
        super().__init__()
        if in_channels % 2:
            raise ValueError(f"in_channels must hold two frames (an even number), got {in_channels}")
        if levels < 1 or radius < 1:
            raise ValueError(f"levels and radius must be >= 1, got {levels} and {radius}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if input_downsample < 1:
            raise ValueError(f"input_downsample must be >= 1, got {input_downsample}")
        self.input_downsample = int(input_downsample)
        self.levels = int(levels)
        self.radius = int(radius)
        self.out_dim = int(out_dim)
        self.features = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_channels // 2, width, kernel_size=3),
            make_activation(activation),
            nn.ReflectionPad2d(1),
            nn.Conv2d(width, width, kernel_size=3),
        )
        self.log_scale = nn.Parameter(torch.tensor(float(temperature)).log())
        self.head = nn.Linear(self.levels * (2 * self.radius + 1) ** 2, self.out_dim)

    def forward(self, pair: Tensor) -> Tensor:
        n, c = pair.shape[:2]
        if self.input_downsample > 1:
            pair = F.avg_pool2d(pair, self.input_downsample)
        both = self.features(torch.cat((pair[:, : c // 2], pair[:, c // 2 :])))  # firsts, then seconds
        scale = self.log_scale.exp()
        hists = []
        for level in range(self.levels):
            if level:
                both = F.avg_pool2d(both, 2)
            hists.append(displacement_histogram(both[:n], both[n:], self.radius, scale))
        return self.head(torch.cat(hists, dim=1))

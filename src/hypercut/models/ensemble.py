"""Test-time self-ensemble of a deblurring backbone over the image's flips and transposes."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SelfEnsemble"]

# (transpose, flip x, flip y) of each pass, in the order they are used.
_PASSES: tuple[tuple[bool, bool, bool], ...] = (
    (False, False, False),
    (False, True, False),
    (False, False, True),
    (False, True, True),
    (True, False, False),
    (True, True, False),
    (True, False, True),
    (True, True, True),
)


def _apply(image: Tensor, transpose: bool, flip_x: bool, flip_y: bool) -> Tensor:
    if transpose:
        image = image.transpose(-1, -2)
    if flip_x:
        image = image.flip(-1)
    if flip_y:
        image = image.flip(-2)
    return image


def _undo(image: Tensor, transpose: bool, flip_x: bool, flip_y: bool) -> Tensor:
    if flip_y:
        image = image.flip(-2)
    if flip_x:
        image = image.flip(-1)
    if transpose:
        image = image.transpose(-1, -2)
    return image


class SelfEnsemble(nn.Module):
    """A backbone run on ``passes`` flips/transposes of the blurry image, its videos averaged.

    Each pass's video is mapped back to the input's orientation, then taken as is or reversed in
    time, per sample, whichever is closer (mean squared difference) to the first pass's video: a
    video and its reverse blur to the same image, so two passes may answer in opposite directions,
    and averaging those would cancel the motion. The first ``passes`` of: as is, flipped left-right,
    flipped upside-down, both, and the same four after a transpose. Costs ``passes`` forward passes.

    Args:
        net: a backbone ``(B, 3, H, W) -> (B, T, 3, H, W)`` that takes any ``H, W``.
        passes: 1, 2, 4 or 8.

    Shape:
        - blurry: :math:`(B, 3, H, W)`
        - output: :math:`(B, T, 3, H, W)`

    Example:
        >>> from hypercut.models import MotionWarpNet
        >>> net = MotionWarpNet(num_frames=5, width=8, enc_blocks=(1,), dec_blocks=(1,), mid_blocks=1)
        >>> SelfEnsemble(net, passes=8)(torch.rand(1, 3, 24, 32)).shape
        torch.Size([1, 5, 3, 24, 32])
    """

    def __init__(self, net: nn.Module, passes: int = 8) -> None:
        super().__init__()
        if passes not in (1, 2, 4, 8):
            raise ValueError(f"passes must be 1, 2, 4 or 8, got {passes}")
        self.net = net
        self.passes = passes

    @property
    def pad_multiple(self) -> int:
        """The wrapped net's input multiple (16 when it does not say), for tiling."""
        return int(getattr(self.net, "pad_multiple", 16))

    def forward(self, blurry: Tensor) -> Tensor:
        first = self.net(blurry)
        total = first.clone()
        for transform in _PASSES[1 : self.passes]:
            video = _undo(self.net(_apply(blurry, *transform)), *transform)
            reverse = video.flip(1)
            closer = (reverse - first).pow(2).mean((1, 2, 3, 4)) < (video - first).pow(2).mean((1, 2, 3, 4))
            total += torch.where(closer.view(-1, 1, 1, 1, 1), reverse, video)
        return total / self.passes

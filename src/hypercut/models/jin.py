"""Jin, Meishvili and Favaro, "Learning to Extract a Video Sequence from a Single Motion-Blurred
Image", CVPR 2018: a cascade of networks that recovers the middle frame first and then the frames
symmetrically outwards, each conditioned on the blurry image and the frames already estimated.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hypercut.models.blocks import InstanceNormResBlock, crop_to, pad_to_multiple

__all__ = ["JinBlur2Vid", "JinFrameNet"]

# Dilations of the two 3x3 convolutions of each dilated block, growing then shrinking the
# receptive field in the middle of each network.
_CENTER_DILATIONS: tuple[tuple[int, int], ...] = ((1, 2), (2, 4), (4, 8), (8, 4), (4, 2), (2, 1))
_SIDE_DILATIONS: tuple[tuple[int, int], ...] = ((1, 2), (4, 8), (8, 4), (2, 1))


def _per_channel_unshuffle(image: Tensor, factor: int) -> Tensor:
    """(B, 3, H, W) -> (B * 3, factor**2, H / factor, W / factor): each colour channel is its own
    grey image, moved to low resolution by space-to-depth."""
    batch, channels, height, width = image.shape
    return F.pixel_unshuffle(image.reshape(batch * channels, 1, height, width), factor)


class JinFrameNet(nn.Module):
    """One network of the Jin et al. cascade: estimates one frame from the blurry image and up to two
    already-estimated frames, as a residual on a base image.

    Every colour channel is processed separately with shared weights (folded into the batch) at low
    resolution after a pixel-unshuffle by ``factor``. A 5x5 stem per input, instance-norm residual
    blocks (plain, then dilated, then plain), one 3x3 "fuse" head after each group producing
    ``factor**2`` channels; the heads are summed with the unshuffled base, shuffled back to full
    resolution, and a small full-resolution network mixes the colour channels and predicts the
    final residual on the base.

    Args:
        factor: pixel-unshuffle factor (4 for the middle frame, 5 for the others).
        num_refs: number of already-estimated frames given as conditions (0, 1 or 2).
        width: channels of the low-resolution body.
        plain_blocks: plain residual blocks before and after the dilated blocks.
        dilations: one ``(d1, d2)`` pair per dilated residual block.
        refine_width: channels of the full-resolution colour-mixing network.
        refine_blocks: instance-norm residual blocks in that network.

    Shape:
        - blurry: :math:`(B, 3, H, W)`, ``H`` and ``W`` multiples of ``factor``
        - refs: ``num_refs`` tensors :math:`(B, 3, H, W)`
        - base: :math:`(B, 3, H, W)`, the image the residual is added to
        - output: :math:`(B, 3, H, W)`

    Example:
        >>> net = JinFrameNet(factor=5, num_refs=2, width=8, refine_width=4)
        >>> x = torch.rand(1, 3, 20, 20)
        >>> net(x, [x, x], base=x).shape
        torch.Size([1, 3, 20, 20])
    """

    def __init__(
        self,
        factor: int = 5,
        num_refs: int = 2,
        width: int = 128,
        plain_blocks: int = 2,
        dilations: Sequence[tuple[int, int]] = _SIDE_DILATIONS,
        refine_width: int = 32,
        refine_blocks: int = 1,
    ) -> None:
        super().__init__()
        if num_refs not in (0, 1, 2):
            raise ValueError(f"num_refs must be 0, 1 or 2, got {num_refs}")
        if num_refs and width % (2 * num_refs) != 0:
            raise ValueError(f"width must be divisible by {2 * num_refs}, got {width}")
        self.factor = factor
        self.num_refs = num_refs
        depth = factor * factor
        # The blurry image gets half the stem channels, the references share the other half.
        blurry_width = width // 2 if num_refs else width
        self.stem_blurry = nn.Conv2d(depth, blurry_width, 5, padding=2, bias=False)
        self.stem_refs = nn.ModuleList(
            nn.Conv2d(depth, (width - blurry_width) // num_refs, 5, padding=2, bias=False)
            for _ in range(num_refs)
        )
        groups: list[list[tuple[int, int]]] = [
            [(1, 1)] * plain_blocks, [(d1, d2) for d1, d2 in dilations], [(1, 1)] * plain_blocks
        ]
        self.groups = nn.ModuleList(
            nn.Sequential(*(InstanceNormResBlock(width, d) for d in group)) for group in groups if group
        )
        self.heads = nn.ModuleList(
            nn.Sequential(nn.InstanceNorm2d(width, affine=True), nn.ReLU(),
                          nn.Conv2d(width, depth, 3, padding=1, bias=False))
            for _ in self.groups
        )
        self.refine_in = nn.Conv2d(3, refine_width, 3, padding=1, bias=False)
        self.refine = nn.Sequential(*(InstanceNormResBlock(refine_width) for _ in range(refine_blocks)))
        self.refine_out = nn.Sequential(nn.InstanceNorm2d(refine_width, affine=True), nn.ReLU(),
                                        nn.Conv2d(refine_width, 3, 3, padding=1, bias=False))

    def forward(self, blurry: Tensor, refs: Sequence[Tensor], base: Tensor) -> Tensor:
        if len(refs) != self.num_refs:
            raise ValueError(f"expected {self.num_refs} reference frames, got {len(refs)}")
        batch, _, height, width = blurry.shape
        features = [self.stem_blurry(_per_channel_unshuffle(blurry, self.factor))]
        features += [stem(_per_channel_unshuffle(ref, self.factor)) for stem, ref in zip(self.stem_refs, refs)]
        x = torch.cat(features, dim=1)
        low = _per_channel_unshuffle(base, self.factor)
        for group, head in zip(self.groups, self.heads):
            x = group(x)
            low = low + head(x)
        estimate = F.pixel_shuffle(low, self.factor).reshape(batch, 3, height, width)
        return base + self.refine_out(self.refine(self.refine_in(estimate)))


class JinBlur2Vid(nn.Module):
    """Jin et al. (CVPR 2018) image-to-video cascade.

    For ``T = 2K + 1`` frames and middle index ``m``: ``x_m = phi_m(B) + B`` (unshuffle x4); then
    ring ``k = 1..K`` outwards (unshuffle x5). Ring 1 has two networks run one after the other:
    ``x_{m-1} = phi_{m-1}(B, x_m, x_m) + x_m`` and ``x_{m+1} = phi_{m+1}(B, x_{m-1}, x_m) + x_m``.
    Each outer ring ``k >= 2`` has one network shared by its two frames (run as one batch):
    ``x_{m-k} = phi_k(B, x_{m-k+2}, x_{m-k+1}) + x_{m-k+1}`` and the mirror image on the right. For
    ``T = 7`` that is ``phi_4``, ``(phi_3, phi_5)``, ``(phi_2, phi_6)``, ``(phi_1, phi_7)``: five
    networks, as in the authors' release.

    Default sizes: the middle network has 144 channels, 3 plain + 6 dilated + 3 plain blocks; the
    ring-1 networks 128 channels, 4 + 4 + 4 blocks; the outer ones 128 channels, 2 + 4 + 2 blocks.
    These are the block counts and widths of the authors' networks and give 18.16 M parameters and
    3.33 M MACs per pixel at ``T = 7`` (reference: 18.2 M, ~3.3 M): each colour channel goes through
    each low-resolution network, so the MACs are ~3x what the parameter count suggests.

    The input is padded (reflect) to a multiple of 20 (the lcm of the unshuffle factors 4 and 5) and
    the output cropped back, so any ``H, W`` works. ``T`` must be odd and ``>= 3``: the cascade starts
    from a middle frame, which an even ``T`` does not have.

    Args:
        num_frames: number of output frames ``T`` (odd, ``>= 3``).
        center_width: channels of the middle-frame network.
        side_width: channels of the other networks (divisible by 4).
        center_plain_blocks: plain blocks before and after the dilated ones, middle network.
        inner_plain_blocks: the same for the two ring-1 networks.
        outer_plain_blocks: the same for the outer rings' networks.
        center_dilations: ``(d1, d2)`` per dilated block of the middle network.
        side_dilations: ``(d1, d2)`` per dilated block of the other networks.
        center_refine_width: channels of the middle network's full-resolution colour mixer.
        side_refine_width: the same for the other networks.

    Shape:
        - blurry: :math:`(B, 3, H, W)` in [0, 1]
        - output: :math:`(B, T, 3, H, W)` (not clamped)

    Example:
        >>> model = JinBlur2Vid(num_frames=5, center_width=8, side_width=8,
        ...                     center_refine_width=4, side_refine_width=4)
        >>> model(torch.rand(1, 3, 30, 45)).shape
        torch.Size([1, 5, 3, 30, 45])
    """

    pad_multiple = 20

    def __init__(
        self,
        num_frames: int = 7,
        center_width: int = 144,
        side_width: int = 128,
        center_plain_blocks: int = 3,
        inner_plain_blocks: int = 4,
        outer_plain_blocks: int = 2,
        center_dilations: Sequence[tuple[int, int]] = _CENTER_DILATIONS,
        side_dilations: Sequence[tuple[int, int]] = _SIDE_DILATIONS,
        center_refine_width: int = 64,
        side_refine_width: int = 32,
    ) -> None:
        super().__init__()
        if num_frames < 3 or num_frames % 2 == 0:
            raise ValueError(
                f"JinBlur2Vid needs an odd num_frames >= 3 (the cascade starts from a middle frame), "
                f"got {num_frames}"
            )
        self.num_frames = num_frames
        self.center = JinFrameNet(4, 0, center_width, center_plain_blocks, center_dilations,
                                  center_refine_width)

        def side(plain_blocks: int) -> JinFrameNet:
            return JinFrameNet(5, 2, side_width, plain_blocks, side_dilations, side_refine_width)

        self.inner_left = side(inner_plain_blocks)
        self.inner_right = side(inner_plain_blocks)
        self.outer = nn.ModuleList(side(outer_plain_blocks) for _ in range(num_frames // 2 - 1))

    def forward(self, blurry: Tensor) -> Tensor:
        if blurry.dim() != 4 or blurry.shape[1] != 3:
            raise ValueError(f"blurry must be (B, 3, H, W), got {tuple(blurry.shape)}")
        height, width = blurry.shape[-2:]
        b = pad_to_multiple(blurry, self.pad_multiple)
        mid = self.num_frames // 2
        frames: dict[int, Tensor] = {mid: self.center(b, [], base=b)}
        frames[mid - 1] = self.inner_left(b, [frames[mid], frames[mid]], base=frames[mid])
        frames[mid + 1] = self.inner_right(b, [frames[mid - 1], frames[mid]], base=frames[mid])
        n = b.shape[0]
        for k, net in enumerate(self.outer, start=2):
            # Left and right frames of a ring share the network: one batched call.
            near = torch.cat([frames[mid - k + 1], frames[mid + k - 1]])
            far = torch.cat([frames[mid - k + 2], frames[mid + k - 2]])
            out = net(torch.cat([b, b]), [far, near], base=near)
            frames[mid - k], frames[mid + k] = out[:n], out[n:]
        video = torch.stack([frames[t] for t in range(self.num_frames)], dim=1)
        return crop_to(video, height, width)

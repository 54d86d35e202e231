"""Tiny synthetic sequences for the ordering tests and experiment: a textured disc translating at a
random velocity over a textured background that moves more slowly (torch only, seeded)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _texture(n: int, size: int, res: int, generator: torch.Generator) -> Tensor:
    low = torch.rand(n, 3, res, res, generator=generator)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def moving_disc_sequences(
    n: int,
    num_frames: int = 7,
    size: int = 16,
    generator: torch.Generator | None = None,
    max_speed: float | None = None,
) -> Tensor:
    """``(n, T, 3, size, size)`` sequences in [0, 1]; the disc moves ``max_speed/3..max_speed`` px per
    frame (default ``size / 16``) in a random direction, the background at most half as fast."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    t, s = num_frames, size
    max_speed = s / 16 if max_speed is None else max_speed
    tex = 2 * s
    bg = _texture(n, tex, max(s // 4, 4), g)
    fg = _texture(n, tex, max(s // 3, 4), g)

    def velocity(lo: float, hi: float) -> Tensor:
        speed = lo + (hi - lo) * torch.rand(n, generator=g)
        angle = 2 * math.pi * torch.rand(n, generator=g)
        return torch.stack((speed * torch.cos(angle), speed * torch.sin(angle)), dim=1)  # (n, 2) x, y

    v_fg = velocity(max_speed / 3, max_speed)
    v_bg = velocity(0.0, max_speed / 2)
    centre = s / 2 + (torch.rand(n, 2, generator=g) - 0.5) * (s / 4)
    radius = s / 5 + (s / 10) * torch.rand(n, generator=g)
    tc = torch.arange(t, dtype=torch.float32) - (t - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(s) + 0.5, torch.arange(s) + 0.5, indexing="ij")
    pix = torch.stack((xs, ys), dim=-1)  # (s, s, 2)

    def sample(texture: Tensor, coords: Tensor) -> Tensor:  # coords (n, t, s, s, 2) in texture px
        grid = (coords / tex * 2 - 1).reshape(n, t * s, s, 2)
        out = F.grid_sample(texture, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return out.reshape(n, 3, t, s, s).permute(0, 2, 1, 3, 4)

    shift_bg = v_bg[:, None, :] * tc[None, :, None]  # (n, t, 2)
    bg_coords = pix[None, None] + shift_bg[:, :, None, None] + s / 2
    c_t = centre[:, None, :] + v_fg[:, None, :] * tc[None, :, None]  # (n, t, 2)
    local = pix[None, None] - c_t[:, :, None, None]  # (n, t, s, s, 2)
    fg_img = sample(fg, local + tex / 2)
    bg_img = sample(bg, bg_coords)
    dist = local.norm(dim=-1)
    mask = torch.sigmoid((radius[:, None, None, None] - dist) * 2.0)[:, :, None]  # (n, t, 1, s, s)
    return (mask * fg_img + (1 - mask) * bg_img).clamp(0, 1)

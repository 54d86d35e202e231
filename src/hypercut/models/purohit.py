"""Purohit, Shah and Rajagopalan, "Bringing Alive Blurred Moments", CVPR 2019: a recurrent decoder
turns a motion latent into per-frame optical flows that warp a sharp centre frame into the video.

Training is in two stages. Stage 1 learns the motion latent and the decoder inside a video
autoencoder on sharp clips (:meth:`PurohitBlur2Vid.forward_autoencoder`). Stage 2 trains the blurry
image encoder to produce the same latent from the blurry image
(:meth:`PurohitBlur2Vid.encode_blurry` against :meth:`PurohitBlur2Vid.encode_video`), with the
decoder frozen or fine-tuned, together with the centre-frame deblurring head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hypercut.models.blocks import ConvLSTMCell, ResBlock, crop_to, pad_to_multiple, warp
from hypercut.models.multiframe_unet import MultiFrameUNet

__all__ = ["BlurryEncoder", "FlowDecoder", "PurohitBlur2Vid", "VideoEncoder"]

_PAD = 8  # three stride-2 levels: the latent and the recurrence live at 1/8 resolution


def _act() -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True)


class _Pyramid(nn.Module):
    """Image -> features at 1, 1/2, 1/4 and 1/8 resolution (channels c, 2c, 4c, 4c)."""

    def __init__(self, base: int) -> None:
        super().__init__()
        self.widths = (base, 2 * base, 4 * base, 4 * base)
        self.levels = nn.ModuleList([nn.Sequential(nn.Conv2d(3, base, 3, padding=1), _act())])
        for cin, cout in zip(self.widths[:-1], self.widths[1:]):
            self.levels.append(nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), _act(),
                                             ResBlock(cout)))

    def forward(self, image: Tensor) -> list[Tensor]:
        features = []
        x = image
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


class BlurryEncoder(nn.Module):
    """Blurry image -> motion latent at 1/8 resolution.

    Args:
        base_channels: channels of the full-resolution level of its feature pyramid.
        latent_channels: channels of the latent.

    Shape:
        - blurry: :math:`(B, 3, H, W)`, ``H`` and ``W`` multiples of 8
        - output: :math:`(B, C_z, H / 8, W / 8)`

    Example:
        >>> BlurryEncoder(4, 8)(torch.rand(1, 3, 16, 24)).shape
        torch.Size([1, 8, 2, 3])
    """

    def __init__(self, base_channels: int = 32, latent_channels: int = 128) -> None:
        super().__init__()
        self.pyramid = _Pyramid(base_channels)
        top = self.pyramid.widths[-1]
        self.body = nn.Sequential(ResBlock(top), ResBlock(top), nn.Conv2d(top, latent_channels, 3, padding=1))

    def forward(self, blurry: Tensor) -> Tensor:
        return self.body(self.pyramid(blurry)[-1])


class VideoEncoder(nn.Module):
    """Sharp clip -> motion latent at 1/8 resolution (stage 1 of Purohit et al.).

    Every frame goes through a feature pyramid (one batch), a ConvLSTM reads the 1/8-resolution
    features in temporal order, and its last hidden state is projected to the latent.

    Args:
        base_channels: channels of the full-resolution level of its feature pyramid.
        latent_channels: channels of the latent.
        hidden_channels: ConvLSTM state channels.

    Shape:
        - sharp: :math:`(B, T, 3, H, W)`, ``H`` and ``W`` multiples of 8
        - output: :math:`(B, C_z, H / 8, W / 8)`

    Example:
        >>> VideoEncoder(4, 8, 8)(torch.rand(1, 5, 3, 16, 24)).shape
        torch.Size([1, 8, 2, 3])
    """

    def __init__(self, base_channels: int = 32, latent_channels: int = 128, hidden_channels: int = 128) -> None:
        super().__init__()
        self.pyramid = _Pyramid(base_channels)
        self.lstm = ConvLSTMCell(self.pyramid.widths[-1], hidden_channels)
        self.to_latent = nn.Conv2d(hidden_channels, latent_channels, 3, padding=1)

    def forward(self, sharp: Tensor) -> Tensor:
        batch, frames = sharp.shape[:2]
        top = self.pyramid(sharp.flatten(0, 1))[-1].unflatten(0, (batch, frames))
        state = None
        for t in range(frames):
            state = self.lstm(top[:, t], state)
        assert state is not None
        return self.to_latent(state[0])


class FlowDecoder(nn.Module):
    """Motion latent + centre frame -> per-frame flows, coarse to fine at 1/8, 1/4, 1/2 and 1.

    The latent gives the initial ConvLSTM state. At every step the ConvLSTM reads the centre frame's
    1/8 features and the previous step's coarse flow and emits a hidden state, from which a 1/8 flow
    is predicted; each finer scale upsamples the flow (x2 in size and value) and adds a correction
    predicted from the upsampled decoder features and the centre frame's features at that scale.
    Only the recurrence is sequential: the refinements of all steps run as one batch. The flow heads
    start at zero, so the untrained decoder predicts zero motion.

    Args:
        num_frames: number of steps ``T``.
        base_channels: channels of the full-resolution level of the centre-frame feature pyramid.
        latent_channels: channels of the motion latent.
        hidden_channels: ConvLSTM state channels.

    Shape:
        - latent: :math:`(B, C_z, H / 8, W / 8)`
        - center: :math:`(B, 3, H, W)`, ``H`` and ``W`` multiples of 8
        - output: four flows in pixels of their own scale, coarse to fine,
          :math:`(B, T, 2, H / s, W / s)` for ``s = 8, 4, 2, 1``

    Example:
        >>> flows = FlowDecoder(5, 4, 8, 8)(torch.rand(1, 8, 2, 3), torch.rand(1, 3, 16, 24))
        >>> [tuple(f.shape) for f in flows]
        [(1, 5, 2, 2, 3), (1, 5, 2, 4, 6), (1, 5, 2, 8, 12), (1, 5, 2, 16, 24)]
    """

    def __init__(self, num_frames: int = 7, base_channels: int = 32, latent_channels: int = 128,
                 hidden_channels: int = 128) -> None:
        super().__init__()
        self.num_frames = num_frames
        self.pyramid = _Pyramid(base_channels)
        w1, w2, w4, w8 = self.pyramid.widths
        self.init_state = nn.Conv2d(latent_channels, 2 * hidden_channels, 3, padding=1)
        self.lstm = ConvLSTMCell(w8 + 2, hidden_channels)
        self.head8 = nn.Conv2d(hidden_channels, 2, 3, padding=1)
        # Refinement at 1/4, 1/2 and 1: inputs are [upsampled decoder features, centre features, up-flow].
        self.refine = nn.ModuleList()
        self.heads = nn.ModuleList()
        for prev, width in ((hidden_channels, w4), (w4, w2), (w2, w1)):
            self.refine.append(nn.Sequential(nn.Conv2d(prev + width + 2, width, 3, padding=1), _act(),
                                             ResBlock(width)))
            self.heads.append(nn.Conv2d(width, 2, 3, padding=1))
        for head in [self.head8, *self.heads]:
            for param in head.parameters():
                nn.init.zeros_(param)

    def forward(self, latent: Tensor, center: Tensor) -> list[Tensor]:
        batch, t = center.shape[0], self.num_frames
        f1, f2, f4, f8 = self.pyramid(center)
        if latent.shape[-2:] != f8.shape[-2:]:
            raise ValueError(f"latent {tuple(latent.shape)} does not match the 1/8 grid of the centre "
                             f"frame {tuple(center.shape)}")
        h, c = self.init_state(latent).chunk(2, dim=1)
        state = (torch.tanh(h), c)
        flow = f8.new_zeros(batch, 2, *f8.shape[-2:])
        hiddens, coarse = [], []
        for _ in range(t):
            state = self.lstm(torch.cat([f8, flow], dim=1), state)
            flow = self.head8(state[0])
            hiddens.append(state[0])
            coarse.append(flow)
        x = torch.stack(hiddens, 1).flatten(0, 1)
        flow = torch.stack(coarse, 1).flatten(0, 1)
        flows = [flow]
        for refine, head, feat in zip(self.refine, self.heads, (f4, f2, f1)):
            feat = feat.unsqueeze(1).expand(-1, t, -1, -1, -1).flatten(0, 1)
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            flow = 2.0 * F.interpolate(flow, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = refine(torch.cat([x, feat, flow], dim=1))
            flow = flow + head(x)
            flows.append(flow)
        return [f.unflatten(0, (batch, t)) for f in flows]


class PurohitBlur2Vid(nn.Module):
    """Purohit et al. (CVPR 2019): motion latent + recurrent flow decoder warping a centre frame.

    A blurry-image encoder gives a motion latent at 1/8 resolution that initialises a ConvLSTM
    decoder; for each time step it predicts optical flow coarse to fine (1/8, 1/4, 1/2, 1) and the
    full-resolution flow warps the centre frame (:func:`~hypercut.models.blocks.warp`, bilinear,
    border-replicating) into that frame. The middle output frame is the centre frame itself.

    The centre frame comes from the model's own deblurring head, a small residual U-Net on the
    blurry image (:class:`~hypercut.models.MultiFrameUNet` with one output frame).

    ``oracle_center=True`` is an **oracle**: it takes the ground-truth centre frame (``center``
    argument of :meth:`forward`) instead of deblurring it, and has no centre head. It exists only to
    compare with the numbers of the HyperCUT authors' re-implementation, which feeds the
    ground-truth centre frame at test time (its frame-4 pPSNR of 31.5 dB on REDS comes from that).
    Never report oracle numbers as deblurring results.

    Stage-1 training (video autoencoder on sharp clips, which needs no blurry image)::

        recon = model.forward_autoencoder(sharp)         # latent from encode_video(sharp)
        loss = charbonnier(recon, sharp)                 # trains video encoder + decoder

    Stage 2 (blurry image): match the latents and reconstruct, decoder frozen or not::

        z_blur = model.encode_blurry(blurry)
        z_video = model.encode_video(sharp).detach()
        loss = F.mse_loss(z_blur, z_video) + charbonnier(model(blurry), sharp)

    The centre head can be trained in either stage on ``sharp[:, T // 2]`` through
    :meth:`predict_center`. :meth:`forward_aux` also returns the flows of every scale, e.g. for a
    multi-scale warping loss.

    Default sizes: 10.58 M parameters, of which 8.35 M are used at inference (the video encoder,
    2.23 M, serves stage 1 only; the centre head has 3.49 M); about 1.21 M MACs per pixel at
    ``T = 7``, mostly the per-frame flow refinement at 1/4, 1/2 and full resolution.

    Inputs are padded (reflect) to a multiple of 8 and outputs cropped back, so any ``H, W`` works.

    Args:
        num_frames: number of output frames ``T`` (odd, ``>= 3``: the centre frame is the middle one).
        oracle_center: take the ground-truth centre frame from ``forward(..., center=...)`` (oracle).
        base_channels: channels of the full-resolution level of each feature pyramid.
        latent_channels: channels of the motion latent.
        hidden_channels: ConvLSTM state channels (encoder and decoder).
        center_base_channels: ``base_channels`` of the centre head's U-Net.
        center_depth: ``depth`` of the centre head's U-Net.

    Shape:
        - blurry: :math:`(B, 3, H, W)` in [0, 1]
        - center: :math:`(B, 3, H, W)`, only with ``oracle_center=True``
        - output: :math:`(B, T, 3, H, W)`

    Example:
        >>> model = PurohitBlur2Vid(num_frames=5, base_channels=4, latent_channels=8,
        ...                         hidden_channels=8, center_base_channels=4, center_depth=1)
        >>> blurry = torch.rand(1, 3, 21, 30)
        >>> model(blurry).shape
        torch.Size([1, 5, 3, 21, 30])
        >>> model.forward_autoencoder(torch.rand(1, 5, 3, 21, 30)).shape
        torch.Size([1, 5, 3, 21, 30])
    """

    def __init__(
        self,
        num_frames: int = 7,
        oracle_center: bool = False,
        base_channels: int = 32,
        latent_channels: int = 128,
        hidden_channels: int = 128,
        center_base_channels: int = 32,
        center_depth: int = 3,
    ) -> None:
        super().__init__()
        if num_frames < 3 or num_frames % 2 == 0:
            raise ValueError(
                f"PurohitBlur2Vid needs an odd num_frames >= 3 (the centre frame is the middle one), "
                f"got {num_frames}"
            )
        self.num_frames = num_frames
        self.oracle_center = oracle_center
        self.blurry_encoder = BlurryEncoder(base_channels, latent_channels)
        self.video_encoder = VideoEncoder(base_channels, latent_channels, hidden_channels)
        self.decoder = FlowDecoder(num_frames, base_channels, latent_channels, hidden_channels)
        # No centre head in oracle mode: it would hold parameters that never get gradients.
        self.center_head = (
            None if oracle_center
            else MultiFrameUNet(num_frames=1, base_channels=center_base_channels, depth=center_depth)
        )

    def predict_center(self, blurry: Tensor) -> Tensor:
        """Deblur the centre frame with the model's own head.

        Shape:
            - blurry: :math:`(B, 3, H, W)`
            - output: :math:`(B, 3, H, W)`
        """
        if self.center_head is None:
            raise RuntimeError("this PurohitBlur2Vid was built with oracle_center=True: it has no centre head")
        return self.center_head(blurry)[:, 0]

    def encode_blurry(self, blurry: Tensor) -> Tensor:
        """Motion latent of a blurry image (stage 2).

        Shape:
            - blurry: :math:`(B, 3, H, W)`
            - output: :math:`(B, C_z, \\lceil H/8 \\rceil, \\lceil W/8 \\rceil)`, same as :meth:`encode_video`
        """
        _check_image(blurry, "blurry")
        return self.blurry_encoder(pad_to_multiple(blurry, _PAD))

    def encode_video(self, sharp: Tensor) -> Tensor:
        """Motion latent of a sharp clip (stage 1), the target of :meth:`encode_blurry`.

        Shape:
            - sharp: :math:`(B, T, 3, H, W)`
            - output: :math:`(B, C_z, \\lceil H/8 \\rceil, \\lceil W/8 \\rceil)`
        """
        if sharp.dim() != 5 or sharp.shape[1] != self.num_frames or sharp.shape[2] != 3:
            raise ValueError(f"sharp must be (B, {self.num_frames}, 3, H, W), got {tuple(sharp.shape)}")
        return self.video_encoder(pad_to_multiple(sharp, _PAD))

    def decode(self, latent: Tensor, center: Tensor) -> dict[str, Tensor | list[Tensor]]:
        """Latent + centre frame -> video and flows.

        Returns:
            ``{"frames": (B, T, 3, H, W), "flows": [four (B, T, 2, ceil(H/s), ceil(W/s)) for
            s = 8, 4, 2, 1], "center": (B, 3, H, W)}``; flows in pixels of their own scale.
        """
        _check_image(center, "center")
        height, width = center.shape[-2:]
        padded = pad_to_multiple(center, _PAD)
        flows = self.decoder(latent, padded)
        t = self.num_frames
        frames = warp(
            padded.unsqueeze(1).expand(-1, t, -1, -1, -1).flatten(0, 1), flows[-1].flatten(0, 1)
        ).unflatten(0, (center.shape[0], t))
        frames = crop_to(frames, height, width)
        # The middle frame is the centre frame itself, not a (near-identity) warp of it.
        frames = torch.cat([frames[:, : t // 2], center.unsqueeze(1), frames[:, t // 2 + 1:]], dim=1)
        flows = [
            crop_to(f, math.ceil(height / s), math.ceil(width / s)) for f, s in zip(flows, (8, 4, 2, 1))
        ]
        return {"frames": frames, "flows": flows, "center": center}

    def forward_aux(self, blurry: Tensor, center: Tensor | None = None) -> dict[str, Tensor | list[Tensor]]:
        """Like :meth:`forward`, returning ``{"frames", "flows", "center", "latent"}`` (see :meth:`decode`)."""
        _check_image(blurry, "blurry")
        if self.oracle_center:
            if center is None:
                raise ValueError("oracle_center=True: forward needs the ground-truth centre frame `center`")
            if center.shape != blurry.shape:
                raise ValueError(f"center {tuple(center.shape)} must match blurry {tuple(blurry.shape)}")
        elif center is not None:
            raise ValueError("`center` is only used with oracle_center=True; this model deblurs its own centre")
        else:
            center = self.predict_center(blurry)
        latent = self.encode_blurry(blurry)
        out = self.decode(latent, center)
        out["latent"] = latent
        return out

    def forward(self, blurry: Tensor, center: Tensor | None = None) -> Tensor:
        """Blurry image (and, for the oracle only, the true centre frame) -> video ``(B, T, 3, H, W)``."""
        frames = self.forward_aux(blurry, center)["frames"]
        assert isinstance(frames, Tensor)
        return frames

    def forward_autoencoder(self, sharp: Tensor) -> Tensor:
        """Stage 1: reconstruct a sharp clip from its own latent and its true centre frame.

        Shape:
            - sharp: :math:`(B, T, 3, H, W)`
            - output: :math:`(B, T, 3, H, W)`
        """
        frames = self.decode(self.encode_video(sharp), sharp[:, self.num_frames // 2])["frames"]
        assert isinstance(frames, Tensor)
        return frames


def _check_image(image: Tensor, name: str) -> None:
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"{name} must be (B, 3, H, W), got {tuple(image.shape)}")

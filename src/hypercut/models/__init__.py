"""Deblurring backbones: plain ``nn.Module`` s mapping a blurry image ``(B, 3, H, W)`` to a video
``(B, T, 3, H, W)``, for any ``H, W`` (padded internally and cropped back).

- :class:`JinBlur2Vid`: the cascade of Jin et al., CVPR 2018 (18.2 M parameters).
- :class:`PurohitBlur2Vid`: motion latent + recurrent flow decoder warping a deblurred centre frame,
  Purohit et al., CVPR 2019, with its stage-1 video autoencoder and an ``oracle_center`` switch.
- :class:`UNetConvLSTM`: U-Net with a ConvLSTM at the bottleneck emitting the frames one by one.
- :class:`MotionWarpNet`: the default: a sharp centre frame and a per-pixel motion trajectory
  along which the centre is warped into the other frames (NAFNet-style trunk).
- :class:`NAFMultiFrame`: the same trunk predicting all frames directly.
- :class:`MultiFrameUNet`: a one-pass U-Net of plain residual blocks predicting all frames.

:class:`SelfEnsemble` wraps any of them for test-time averaging over flips and transposes.
"""

from hypercut.models.blocks import (
    ConvLSTMCell,
    InstanceNormResBlock,
    ResBlock,
    crop_to,
    pad_to_multiple,
    warp,
)
from hypercut.models.ensemble import SelfEnsemble
from hypercut.models.jin import JinBlur2Vid, JinFrameNet
from hypercut.models.multiframe_unet import MultiFrameUNet
from hypercut.models.nafnet import MotionWarpNet, NAFBlock, NAFMultiFrame, NAFUNet, load_with_new_blocks
from hypercut.models.purohit import BlurryEncoder, FlowDecoder, PurohitBlur2Vid, VideoEncoder
from hypercut.models.unet_convlstm import UNetConvLSTM

__all__ = [
    "BlurryEncoder",
    "ConvLSTMCell",
    "FlowDecoder",
    "InstanceNormResBlock",
    "JinBlur2Vid",
    "JinFrameNet",
    "MotionWarpNet",
    "MultiFrameUNet",
    "NAFBlock",
    "NAFMultiFrame",
    "NAFUNet",
    "PurohitBlur2Vid",
    "ResBlock",
    "SelfEnsemble",
    "UNetConvLSTM",
    "VideoEncoder",
    "crop_to",
    "load_with_new_blocks",
    "pad_to_multiple",
    "warp",
]

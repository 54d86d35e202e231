"""hypercut: image-to-video deblurring with HyperCUT self-supervised ordering.

Importing ``hypercut`` is cheap: it loads neither Lightning, Hydra nor wandb. Import the
sub-packages you need, e.g. ``from hypercut.models import MultiFrameUNet``.
"""

__version__ = "0.1.0"

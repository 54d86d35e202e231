"""HyperCUT ordering: pair encoder, hyperplane, pair scores, canonical order (torch only).

Example:
    >>> import torch
    >>> from hypercut.ordering import Hyperplane, OrderCanonicalizer, OrderingModel, PairEncoder
    >>> model = OrderingModel(PairEncoder(), Hyperplane(128, seed=0))  # antisymmetric by default
    >>> u, v = model(torch.rand(2, 7, 3, 64, 64))  # (2, 3) each, v == -u
    >>> canonical, flipped, u = OrderCanonicalizer(model, rule="outer")(torch.rand(2, 7, 3, 64, 64))
"""

from hypercut.ordering.canonical import LABEL_RULES, OrderCanonicalizer, flip_mask, flip_sequences
from hypercut.ordering.encoder import PairEncoder, ResidualBlock, make_activation
from hypercut.ordering.hyperplane import Hyperplane
from hypercut.ordering.motion_encoder import MotionPairEncoder, displacement_histogram
from hypercut.ordering.released import (
    RELEASED_LAYOUT,
    from_released_state_dict,
    load_released_checkpoint,
    released_layout,
)
from hypercut.ordering.scoring import OrderingModel, pair_indices, pair_scores

__all__ = [
    "LABEL_RULES",
    "RELEASED_LAYOUT",
    "Hyperplane",
    "MotionPairEncoder",
    "OrderCanonicalizer",
    "OrderingModel",
    "PairEncoder",
    "ResidualBlock",
    "flip_mask",
    "flip_sequences",
    "from_released_state_dict",
    "load_released_checkpoint",
    "make_activation",
    "displacement_histogram",
    "pair_indices",
    "pair_scores",
    "released_layout",
]

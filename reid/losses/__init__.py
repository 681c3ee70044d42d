"""Losses registered in ``reid.registry.LOSSES`` and the weighted loss set."""
from reid.losses import attention_reg, mask  # noqa: F401  (registration)
from reid.losses.build import LossSet, build_losses
from reid.losses.center import CenterLoss
from reid.losses.cross_entropy import CrossEntropyLoss, smoothed_cross_entropy
from reid.losses.triplet import TripletLoss, batch_hard_triplet, hardest_pairs, pairwise_distance

__all__ = [
    "CenterLoss", "CrossEntropyLoss", "LossSet", "TripletLoss", "batch_hard_triplet", "build_losses",
    "hardest_pairs", "pairwise_distance", "smoothed_cross_entropy",
]

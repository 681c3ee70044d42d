"""Losses registered in ``reid.registry.LOSSES`` and the weighted loss set; every module of this
package is imported, so a new loss only needs its file here."""
from reid.losses.build import LossSet, build_losses
from reid.losses.cross_entropy import CrossEntropyLoss, smoothed_cross_entropy
from reid.losses.triplet import TripletLoss, batch_hard_triplet, hardest_pairs, pairwise_distance
from reid.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = [
    "CrossEntropyLoss", "LossSet", "TripletLoss", "batch_hard_triplet", "build_losses",
    "hardest_pairs", "pairwise_distance", "smoothed_cross_entropy",
]

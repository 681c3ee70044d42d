"""Shared network pieces: poolings (``POOLINGS``), embedding heads (``HEADS``: BNNeck, LAGA reduction,
MGN conv reduction), inits. Every module of this package is imported, so a new head or pooling only
needs its file here."""
from reid.models.heads.heads import (
    HEADS,
    BNNeckHead,
    ConvReductionHead,
    HeadOutput,
    IdentityHead,
    ReductionHead,
)
from reid.models.heads.init import INIT_SCHEMES, InitScheme, init_classifier, init_kaiming, init_laga, init_scheme
from reid.models.heads.pooling import POOLINGS, GlobalPool, StripePool, avg_max
from reid.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = [
    "HEADS", "INIT_SCHEMES", "POOLINGS", "BNNeckHead", "ConvReductionHead", "GlobalPool", "HeadOutput", "IdentityHead",
    "ReductionHead", "StripePool", "init_classifier", "init_kaiming", "init_laga",
    "init_scheme", "InitScheme", "avg_max",
]

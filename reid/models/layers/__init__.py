"""Attention and regularisation layers, registered in ``reid.registry.LAYERS``; every module of this
package is imported, so a new layer only needs its file here."""
from reid.models.layers.cam import CAM
from reid.models.layers.dropblock import BADropBlock, BatchDropBlock
from reid.models.layers.las import LAS, LASOutput
from reid.models.layers.mask_attention import MaskGuidedAttention, MMGAOutput, SEAttention
from reid.models.layers.rga import RGA
from reid.models.layers.sam_rpe import SAMRPE
from reid.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = [
    "BADropBlock",
    "BatchDropBlock",
    "CAM",
    "LAS",
    "LASOutput",
    "MMGAOutput",
    "MaskGuidedAttention",
    "RGA",
    "SAMRPE",
    "SEAttention",
]

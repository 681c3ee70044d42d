"""Attention and regularisation layers, registered in ``reid.registry.LAYERS``."""
from reid.models.layers.cam import CAM
from reid.models.layers.dropblock import BADropBlock, BatchDropBlock
from reid.models.layers.las import LAS, LASOutput
from reid.models.layers.mmga import MaskGuidedAttention, MMGAOutput, SEAttention
from reid.models.layers.rga import RGA
from reid.models.layers.sam_rpe import SAMRPE

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

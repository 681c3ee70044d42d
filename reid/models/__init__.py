"""Backbones, layers, heads and networks. Every module of this package (and of its subpackages) is
imported, which fills BACKBONES, LAYERS, HEADS, POOLINGS and MODELS: a new network only needs its file."""
from reid.models.build import build_backbone, build_model, summary
from reid.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["build_backbone", "build_model", "summary"]

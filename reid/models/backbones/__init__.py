"""Backbones registered in ``reid.registry.BACKBONES`` (ResNet-18/34/50, MobileNetV2); every module of
this package is imported, so a new backbone only needs its file here (see :mod:`.base`)."""
from reid.models.backbones.base import Backbone, ShapeSpec, TrunkSplit, WeightsError, set_stage_stride
from reid.models.backbones.mobilenetv2 import MobileNetV2
from reid.models.backbones.resnet import ResNet
from reid.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["Backbone", "MobileNetV2", "ResNet", "ShapeSpec", "TrunkSplit", "WeightsError", "set_stage_stride"]

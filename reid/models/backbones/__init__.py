"""Backbones registered in ``reid.registry.BACKBONES``: ResNet-18/34/50, MobileNetV2."""
from reid.models.backbones.mobilenetv2 import MobileNetV2, WeightsError
from reid.models.backbones.resnet import ResNet, set_stage_stride

__all__ = ["MobileNetV2", "ResNet", "WeightsError", "set_stage_stride"]

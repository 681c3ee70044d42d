"""RGA-Net (Zhang et al., "Relation-Aware Global Attention for Person Re-identification", CVPR 2020).

A backbone (ResNet-50, last stride 1) with one RGA module (``LAYERS["rga"]``) after each of
layer1..layer4, then GAP -> BNNeck -> classifier (models.md "RGA-Net"). The RGA modules' parameters
depend on the feature-map sizes, so the network is built for one input size (``input_size``,
which must equal ``input.size``); another size at forward time is a ValueError saying so.

Shapes (ResNet-50, 256x128, last stride 1): layer1 256x64x32, layer2 512x32x16, layer3 1024x16x8,
layer4 2048x16x8; training output ``{"logits": [B, N], "features": [B, 2048]}`` (pre-BN, for the
triplet loss), eval ``{"features": [B, 2048]}`` (after the BN with ``neck_feat="after"``).
"""
from __future__ import annotations

import torch
from torch import nn

from reid.checks import Dim, Size
from reid.models.build import backbone_groups, build_backbone
from reid.models.heads import BNNeckHead
from reid.models.heads.heads import NeckFeat
from reid.models.layers import RGA
from reid.models.layers.common import checkpointed
from reid.registry import MODELS, ConfigError

STAGES = ("layer1", "layer2", "layer3", "layer4")


@MODELS.register("rganet")
class RGANet(nn.Module):
    """Backbone with RGA after layer1..layer4 -> GAP -> BNNeck (see the module docstring).

    ``use_spatial`` / ``use_channel`` choose RGA-S, RGA-C or RGA-SC; ``channel_ratio`` and
    ``spatial_ratio`` are the embedding reductions s, ``down_ratio`` the W reduction d;
    ``rga_stages`` the stages followed by a module. ``checkpoint_attention`` recomputes the RGA
    modules' activations in backward instead of keeping them (less memory, more time; same result).
    """

    def __init__(self, num_classes: int,
                 backbone: dict = {"name": "resnet50", "last_stride": 1},  # noqa: B006
                 input_size: Size = None,
                 use_spatial: bool = True, use_channel: bool = True, channel_ratio: Dim = 8,
                 spatial_ratio: Dim = 8, down_ratio: Dim = 8,
                 rga_stages: list = ["layer1", "layer2", "layer3", "layer4"],  # noqa: B006
                 neck_feat: NeckFeat = "after", checkpoint_attention: bool = False):
        super().__init__()
        if input_size is None:
            input_size = [256, 128]  # a direct call without a config; configs fill it from input.size
        if len(input_size) != 2 or not all(isinstance(v, int) and v > 0 for v in input_size):
            raise ConfigError(f"model.input_size must be [height, width], got {input_size}")
        unknown = [s for s in rga_stages if s not in STAGES]
        if unknown:
            raise ConfigError(f"model.rga_stages: unknown stage '{unknown[0]}' (stages: {', '.join(STAGES)})")
        if not (use_spatial or use_channel):
            raise ConfigError("model: at least one of use_spatial, use_channel must be true")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.checkpoint_attention = bool(checkpoint_attention)
        self.backbone = build_backbone(backbone)
        shapes = self.backbone.output_shape()
        self.rga = nn.ModuleDict({
            name: RGA(shapes[name].channels, *shapes[name].size(self.input_size), use_spatial=use_spatial,
                      use_channel=use_channel, channel_ratio=channel_ratio, spatial_ratio=spatial_ratio,
                      down_ratio=down_ratio)
            for name in STAGES if name in rga_stages
        })
        self.feature_dim = shapes["layer4"].channels
        self.head = BNNeckHead(self.feature_dim, num_classes, neck_feat)

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[2:]) != self.input_size:
            raise ValueError(
                f"rganet was built for {self.input_size[0]}x{self.input_size[1]} inputs "
                f"(model.input_size; its RGA modules depend on the feature-map sizes), got "
                f"{list(x.shape)}: set model.input_size equal to input.size"
            )

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> the attended layer4 map [B, C, h, w]."""
        self.check_input(x)
        x = self.backbone.stage("stem")(x)
        for name in STAGES:
            x = self.backbone.stage(name)(x)
            if name in self.rga:
                rga = self.rga[name]
                x = checkpointed(rga, x) if self.checkpoint_attention and self.training else rga(x)
        return x

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training ``{"logits", "features"}``, eval ``{"features"}`` (see the module docstring)."""
        out = self.head(self.feature_map(x).mean(dim=(2, 3)))
        if self.training:
            return {"logits": out.logits, "features": out.feature}
        return {"features": out.test}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return backbone_groups(self, self.backbone)

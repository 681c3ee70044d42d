"""BoT baseline (Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person Re-ID", 2019)."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from reid.models.build import backbone_groups, build_backbone
from reid.models.heads import BNNeckHead, IdentityHead
from reid.models.heads.heads import NeckFeat
from reid.registry import MODELS, POOLINGS, ConfigError

BotNeck = Literal["bnneck", "none"]


@MODELS.register("bot")
class BoT(nn.Module):
    """Backbone -> pooling -> BNNeck -> classifier.

    Training: ``{"logits": [B, num_classes], "features": [B, D]}`` (features before the BN, for the
    triplet loss). Eval: ``{"features": [B, D]}`` (after the BN when ``neck_feat="after"``).
    ``pooling``: a ``POOLINGS`` name (avg | max | avgmax | gem); ``neck``: bnneck | none.
    """

    def __init__(self, num_classes: int, backbone: dict = {"name": "resnet50", "last_stride": 1},  # noqa: B006
                 pooling: str = "avg", neck: BotNeck = "bnneck", neck_feat: NeckFeat = "after"):
        super().__init__()
        self.backbone = build_backbone(backbone)
        dim = int(self.backbone.feature_dim)
        self.pool = POOLINGS.build(pooling, where="model.pooling")
        if neck == "bnneck":
            self.head: nn.Module = BNNeckHead(dim, num_classes, neck_feat)
        elif neck == "none":
            self.head = IdentityHead(dim, num_classes)
        else:
            raise ConfigError(f"model.neck must be 'bnneck' or 'none', got '{neck}'")
        self.feature_dim = dim

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x [B, 3, H, W] -> named outputs (see the class docstring)."""
        out = self.head(self.pool(self.backbone(x)))
        if self.training:
            return {"logits": out.logits, "features": out.feature}
        return {"features": out.test}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return backbone_groups(self, self.backbone)

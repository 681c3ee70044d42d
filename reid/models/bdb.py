"""BDB, Batch DropBlock network (Dai et al., "Batch DropBlock Network for Person Re-identification
and Beyond", ICCV 2019): the baseline LAG-Net's BA-DropBlock improves on (models.md).

ResNet-50 (last stride 1) -> layer4 map F [B, C, H, W], then two branches::

    global:   GAP(F) -> Conv1x1(C -> 512) + BN + ReLU = g -> BNNeck -> classifier
    dropping: Bottleneck(C -> C)(F) -> BatchDropBlock (one random band of height_ratio * H rows,
              the same for the whole batch; training only) -> GMP -> Conv1x1(C -> 1024) + BN + ReLU
              = d -> BNNeck -> classifier

Training output: ``{"logits": [g_logits, d_logits], "features": [g [B, 512], d [B, 1024]]}`` (triplet
on the reduced, pre-BN features). Eval: ``{"features": [B, 1536]}``, the two after-BN features
concatenated (``neck_feat="before"``: the reduced features).
"""
from __future__ import annotations

import torch
from torch import nn

from reid.models.backbones.resnet import Bottleneck
from reid.models.bot import build_backbone
from reid.models.build import backbone_groups
from reid.models.heads import BNNeckHead, IdentityHead, init_kaiming
from reid.models.layers import BatchDropBlock
from reid.registry import MODELS, ConfigError


class _Reduction(nn.Module):
    """[B, C] -> Conv1x1(C -> D, no bias) + BN + ReLU -> [B, D]."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(in_dim, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True))
        self.block.apply(init_kaiming)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x[:, :, None, None]).flatten(1)


@MODELS.register("bdb")
class BDBNet(nn.Module):
    """Batch DropBlock network (see the module docstring).

    ``height_ratio``/``width_ratio``: the dropped block; ``global_dim``/``drop_dim``: reductions;
    ``neck``: bnneck (BN1d + bias-free classifier) | none (Linear classifier on the reduced feature,
    as the released BDB code).
    """

    def __init__(self, num_classes: int,
                 backbone: dict = {"name": "resnet50", "last_stride": 1},  # noqa: B006
                 height_ratio: float = 1 / 3, width_ratio: float = 1.0, global_dim: int = 512,
                 drop_dim: int = 1024, neck: str = "bnneck", neck_feat: str = "after"):
        super().__init__()
        if neck not in ("bnneck", "none"):
            raise ConfigError(f"model.neck must be 'bnneck' or 'none', got '{neck}'")
        self.backbone = build_backbone(backbone)
        c = int(self.backbone.feature_dim)
        self.global_reduction = _Reduction(c, global_dim)
        self.bottleneck = Bottleneck(c, c // 4)
        self.bottleneck.apply(init_kaiming)
        self.batch_drop = BatchDropBlock(c, height_ratio, width_ratio)
        self.drop_reduction = _Reduction(c, drop_dim)
        if neck == "bnneck":
            self.heads = nn.ModuleList([BNNeckHead(global_dim, num_classes, neck_feat),
                                        BNNeckHead(drop_dim, num_classes, neck_feat)])
        else:
            self.heads = nn.ModuleList([IdentityHead(global_dim, num_classes),
                                        IdentityHead(drop_dim, num_classes)])
        self.feature_dim = global_dim + drop_dim

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """[B, 3, H, W] -> training {logits, features} (lists of 2), eval {features [B, 1536]}."""
        f = self.backbone(x)
        g = self.global_reduction(f.mean(dim=(2, 3)))
        d = self.drop_reduction(self.batch_drop(self.bottleneck(f)).amax(dim=(2, 3)))
        outs = [self.heads[0](g), self.heads[1](d)]
        if self.training:
            return {"logits": [o.logits for o in outs], "features": [o.feature for o in outs]}
        return {"features": torch.cat([o.test for o in outs], dim=1)}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return backbone_groups(self, self.backbone)


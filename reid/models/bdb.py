"""BDB, Batch DropBlock network (Dai et al., "Batch DropBlock Network for Person Re-identification
and Beyond", ICCV 2019): the baseline LAG-Net's BA-DropBlock improves on (models.md).

ResNet-50 (last stride 1) -> layer4 map F [B, C, H, W], then two branches::

    global:   GAP(F) -> Conv1x1(C -> 512) + BN2d + ReLU = g -> head
    dropping: Bottleneck(C -> C)(F) -> BatchDropBlock (one random band of round(height_ratio * H)
              rows and the full width, the same for the whole batch; training only) -> GMP ->
              Linear(C -> 1024) + BN1d + ReLU = d -> head

As the released code (daizuozhuo/batch-dropblock-network models/networks.py ``BFE``), by default:
``neck="none"``, a plain Linear classifier (with bias) on g and d; triplet on g and d; test feature
[g, d] (1536-D); ``height_ratio=0.33`` (its person data sets); ``init="bdb"`` (Conv2d kaiming fan_in,
Linear fan_out, classifiers fan_out, BN weight N(1, 0.02); the Bottleneck keeps PyTorch's defaults).
``neck="bnneck"``: a BNNeck on g and d instead (test feature after the BN, or before with
``neck_feat="before"``).

Training output: ``{"logits": [g_logits, d_logits], "features": [g [B, 512], d [B, 1024]]}``.
Eval: ``{"features": [B, 1536]}``.
"""
from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from reid.checks import Dim, Fraction
from reid.models.backbones.resnet import Bottleneck
from reid.models.build import backbone_groups, build_backbone
from reid.models.heads import BNNeckHead, IdentityHead, init_kaiming, init_scheme
from reid.models.heads.heads import NeckFeat
from reid.models.layers import BatchDropBlock
from reid.models.layers.common import conv_bn
from reid.registry import MODELS, ConfigError, suggestion

BdbNeck = Literal["none", "bnneck"]
NECKS = get_args(BdbNeck)


@MODELS.register("bdb")
class BDBNet(nn.Module):
    """Batch DropBlock network (see the module docstring).

    ``height_ratio``/``width_ratio``: the dropped block; ``global_dim``/``drop_dim``: reductions;
    ``neck``: none (Linear classifier on the reduced feature, as the released code) | bnneck
    (BN1d + bias-free classifier); ``init``: an init scheme (:mod:`reid.models.heads.init`).
    """

    def __init__(self, num_classes: int,
                 backbone: dict = {"name": "resnet50", "last_stride": 1},  # noqa: B006
                 height_ratio: Fraction = 0.33, width_ratio: Fraction = 1.0, global_dim: Dim = 512,
                 drop_dim: Dim = 1024, neck: BdbNeck = "none", neck_feat: NeckFeat = "after", init: str = "bdb"):
        super().__init__()
        if neck not in NECKS:
            raise ConfigError(f"model.neck: unknown choice '{neck}'{suggestion(str(neck), NECKS)}")
        scheme = init_scheme(init, "model.init")
        self.backbone = build_backbone(backbone)
        c = int(self.backbone.feature_dim)
        self.global_reduction = conv_bn(c, global_dim)
        self.bottleneck = Bottleneck(c, c // 4)
        self.batch_drop = BatchDropBlock(c, height_ratio, width_ratio)
        self.drop_reduction = nn.Sequential(nn.Linear(c, drop_dim, bias=False), nn.BatchNorm1d(drop_dim),
                                            nn.ReLU(inplace=True))
        embed_init = init_kaiming if scheme is None else scheme.embedding
        self.global_reduction.apply(embed_init)
        self.drop_reduction.apply(embed_init)
        if scheme is None or scheme.blocks == "kaiming":
            self.bottleneck.apply(init_kaiming)
        if neck == "bnneck":
            self.heads = nn.ModuleList([BNNeckHead(global_dim, num_classes, neck_feat, init=init),
                                        BNNeckHead(drop_dim, num_classes, neck_feat, init=init)])
        else:
            self.heads = nn.ModuleList([IdentityHead(global_dim, num_classes, init=init),
                                        IdentityHead(drop_dim, num_classes, init=init)])
        self.feature_dim = global_dim + drop_dim

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """[B, 3, H, W] -> training {logits, features} (lists of 2), eval {features [B, 1536]}."""
        f = self.backbone(x)
        g = self.global_reduction(f.mean(dim=(2, 3), keepdim=True)).flatten(1)
        d = self.drop_reduction(self.batch_drop(self.bottleneck(f)).amax(dim=(2, 3)))
        outs = [self.heads[0](g), self.heads[1](d)]
        if self.training:
            return {"logits": [o.logits for o in outs], "features": [o.feature for o in outs]}
        return {"features": torch.cat([o.test for o in outs], dim=1)}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return backbone_groups(self, self.backbone)

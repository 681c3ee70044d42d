"""MMGA, multi-scale body-part mask guided attention (Cai et al., CVPRW 2019; models.md "MMGA").

ResNet-50 (last stride 1); ``LAYERS["mmga"]`` modules (spatial sigmoid maps x SE channel weights)::

    x2 = layer2(layer1(stem(x)))                         [B, 512, 32, 16]   (256x128 input)
    module 1 on x2 (1 map: whole body), applied to x3 = layer3(x2) (map avg-pooled 2x; SE(1024))
    module 2 on the attended x3 (3 maps: whole, upper, lower), applied to x4 = layer4(x3') (SE(2048))
    -> three features [B, 2048, 16, 8] -> GAP -> BNNeck -> classifier, one head per body part

Training output: ``{"logits": 3 x [B, N], "features": 3 x [B, 2048] (pre-BN, triplet),
"attention_maps": [S1 [B, 1, 32, 16], S2 [B, 3, 16, 8]]}``; channel m of every attention map pairs
with mask channel m (0 whole, 1 upper, 2 lower) in the ``mask_guidance`` loss. Eval:
``{"features": [B, 3 * 2048]}`` (the three after-BN features concatenated), and the maps.
"""
from __future__ import annotations

import torch
from torch import nn

from reid.checks import Dim
from reid.models.build import backbone_groups, build_backbone
from reid.models.heads import BNNeckHead
from reid.models.heads.heads import NeckFeat
from reid.models.layers import MaskGuidedAttention
from reid.registry import MODELS

PARTS = ("whole", "upper", "lower")


@MODELS.register("mmga")
class MMGANet(nn.Module):
    """MMGA (see the module docstring). ``reduction``: s of the spatial branch (C -> C/s -> maps);
    ``se_reduction``: r of the SE channel attention."""

    def __init__(self, num_classes: int,
                 backbone: dict = {"name": "resnet50", "last_stride": 1},  # noqa: B006
                 reduction: Dim = 16, se_reduction: Dim = 16, neck_feat: NeckFeat = "after"):
        super().__init__()
        self.backbone = build_backbone(backbone)
        c2, c3, c4 = (int(c) for c in self.backbone.stage_channels[1:4])
        self.module1 = MaskGuidedAttention(c2, c3, num_maps=1, reduction=reduction, se_reduction=se_reduction)
        self.module2 = MaskGuidedAttention(c3, c4, num_maps=3, reduction=reduction, se_reduction=se_reduction)
        self.heads = nn.ModuleList(BNNeckHead(c4, num_classes, neck_feat) for _ in PARTS)
        self.feature_dim = c4 * len(PARTS)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """[B, 3, H, W] -> named outputs (see the module docstring)."""
        bb = self.backbone
        x2 = bb.stage("layer2")(bb.stage("layer1")(bb.stage("stem")(x)))
        m1 = self.module1(x2, bb.stage("layer3")(x2))
        x3 = m1.features[0]
        m2 = self.module2(x3, bb.stage("layer4")(x3))
        outs = [head(f.mean(dim=(2, 3))) for head, f in zip(self.heads, m2.features)]
        maps = [m1.maps, m2.maps]
        if self.training:
            return {"logits": [o.logits for o in outs], "features": [o.feature for o in outs],
                    "attention_maps": maps}
        return {"features": torch.cat([o.test for o in outs], dim=1), "attention_maps": maps}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return backbone_groups(self, self.backbone)

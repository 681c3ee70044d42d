"""LAG-Net (local attention guided network; models.md "LAG-Net").

Trunk conv1..layer3[0] (shared); three streams, each its own copy of layer3[1:] + layer4::

    global  (layer4 stride 2, 12x4 at 384x128):  g_gs = GMP + GAP                     [B, C]
    part    (stride 1, 24x8):  g_ps = GMP + GAP; p0..p2 = GMP + GAP of 3 horizontal stripes
    local attention (stride 1, 24x8): F_la -> LAS (top-M maps): parts [B, M, C], g_la [B, C];
            BA-DropBlock(F_la, maps) = d (training; d = F_la at test); g_d = 2 * GMP(d)

Seven heads (la, d, gs, ps, p0, p1, p2): BN1d -> LeakyReLU(0.1) -> Linear(C -> 512, no bias) ->
BN1d (= the head's feature) -> Linear(512 -> N, no bias, N(0, 0.001)). Five triplet features:
Conv1x1(C -> 256) + BN + ReLU of g_gs, g_ps, g_la, g_d, and of p0, p1, p2 concatenated (768).

Training output: ``{"logits": 7 x [B, N], "triplet_features": [gs, ps, la, d (256), stripes (768)],
"features": 7 x [B, 512], "parts": [B, M, C] (for ``attention_reg``)}``. Eval: ``{"features":
[B, 7 * 512]}`` (3584-D), the seven BN features concatenated in head order.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from reid.models.bot import build_backbone
from reid.models.build import backbone_groups
from reid.models.heads import StripePool, init_classifier, init_kaiming
from reid.models.layers import LAS, BADropBlock
from reid.registry import MODELS, ConfigError

HEAD_NAMES = ("la", "d", "gs", "ps", "p0", "p1", "p2")


class LAGHead(nn.Module):
    """x [B, C] -> BN1d -> LeakyReLU(0.1) -> Linear(C -> D, no bias) -> BN1d = f [B, D];
    logits = Linear(D -> N, no bias)(f)."""

    def __init__(self, in_dim: int, num_classes: int, dim: int = 512):
        super().__init__()
        self.embed = nn.Sequential(nn.BatchNorm1d(in_dim), nn.LeakyReLU(0.1, inplace=True),
                                   nn.Linear(in_dim, dim, bias=False), nn.BatchNorm1d(dim))
        self.embed.apply(init_kaiming)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        init_classifier(self.classifier)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        f = self.embed(x)
        return f, (self.classifier(f) if self.training else None)


def conv_reduction(in_dim: int, dim: int) -> nn.Sequential:
    """Conv1x1(in -> dim, no bias) + BN + ReLU on [B, in, 1, 1]."""
    block = nn.Sequential(nn.Conv2d(in_dim, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True))
    block.apply(init_kaiming)
    return block


def gap_gmp(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> GAP + GMP [B, C]."""
    return x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))


@MODELS.register("lagnet")
class LAGNet(nn.Module):
    """LAG-Net (see the module docstring).

    ``las_pooling``: add (released code) | mul (WS-DAN attention pooling); ``num_parts``: M;
    ``drop_threshold``: BA-DropBlock's theta; ``use_drop``: the BA-DropBlock branch (d head);
    ``embed_dim``/``triplet_dim``: head and triplet-reduction widths; ``stripes``: part stripes.
    The backbone's ``last_stride`` is irrelevant: each stream sets its own layer4 stride.
    """

    def __init__(self, num_classes: int,
                 backbone: dict = {"name": "resnet50", "last_stride": 1},  # noqa: B006
                 las_pooling: str = "add", num_parts: int = 24, drop_threshold: float = 0.5,
                 use_drop: bool = True, embed_dim: int = 512, triplet_dim: int = 256, stripes: int = 3):
        super().__init__()
        net = build_backbone(backbone)
        if len(net.layer3) < 2:
            raise ConfigError("lagnet needs a backbone whose layer3 has at least 2 blocks")
        self.trunk = nn.Sequential(*net.stem, net.layer1, net.layer2, net.layer3[0])
        channels = int(net.stage_channels[-1])

        def stream(stride: int) -> nn.Sequential:
            return nn.Sequential(copy.deepcopy(net.layer3[1:]), net.branch_stage("layer4", stride))

        self.global_stream = stream(2)
        self.part_stream = stream(1)
        self.la_stream = stream(1)
        self.stripe_pool = StripePool(stripes, "avgmax")
        self.las = LAS(channels, num_parts=num_parts, pooling=las_pooling)
        self.drop = BADropBlock(channels, threshold=drop_threshold) if use_drop else None
        self.head_names = [n for n in HEAD_NAMES[:4] if n != "d" or use_drop] + [f"p{i}" for i in range(stripes)]
        self.heads = nn.ModuleDict({n: LAGHead(channels, num_classes, embed_dim) for n in self.head_names})
        self.triplet_names = [n for n in ("gs", "ps", "la", "d") if n in self.head_names] + ["stripes"]
        self.reductions = nn.ModuleDict({n: conv_reduction(channels, triplet_dim) for n in self.triplet_names[:-1]})
        self.stripe_reductions = nn.ModuleList(conv_reduction(channels, triplet_dim) for _ in range(stripes))
        self.feature_dim = embed_dim * len(self.head_names)
        self._backbone_modules = [self.trunk, self.global_stream, self.part_stream, self.la_stream]

    def pooled(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """[B, 3, H, W] -> ({head name: [B, C]}, LAS part vectors [B, M, C])."""
        t = self.trunk(x)
        v = {"gs": gap_gmp(self.global_stream(t))}
        part = self.part_stream(t)
        v["ps"] = gap_gmp(part)
        f_la = self.la_stream(t)
        las = self.las(f_la)
        v["la"] = las.global_feature
        if self.drop is not None:
            d = self.drop(f_la, las.attention) if self.training else f_la
            v["d"] = 2.0 * d.amax(dim=(2, 3))
        for i, s in enumerate(self.stripe_pool(part)):
            v[f"p{i}"] = s
        return v, las.parts

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Training: logits, triplet_features, features, parts; eval: features [B, 7 * 512]."""
        v, parts = self.pooled(x)
        feats, logits = [], []
        for name in self.head_names:
            f, y = self.heads[name](v[name])
            feats.append(f)
            logits.append(y)
        if not self.training:
            return {"features": torch.cat(feats, dim=1)}
        trip = [self.reductions[n](v[n][:, :, None, None]).flatten(1) for n in self.triplet_names[:-1]]
        stripes = [red(v[f"p{i}"][:, :, None, None]).flatten(1) for i, red in enumerate(self.stripe_reductions)]
        trip.append(torch.cat(stripes, dim=1))
        return {"logits": logits, "triplet_features": trip, "features": feats, "parts": parts}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return backbone_groups(self, *self._backbone_modules)

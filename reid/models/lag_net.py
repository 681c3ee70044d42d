"""LAG-Net, local attention guided network (models.md "LAG-Net"); not LAGA-Net (:mod:`reid.models.laga_net`).

Trunk conv1..layer3[0] (shared); three streams, each its own copy of layer3[1:] + layer4::

    global  (layer4 stride 2, 12x4 at 384x128):  g_gs = GMP + GAP                     [B, C]
    part    (stride 1, 24x8):  g_ps = GMP + GAP; p0..p2 = GMP + GAP of 3 horizontal stripes
    local attention (stride 1, 24x8): F_la -> LAS (top-M maps): parts [B, M, C], g_la [B, C];
            BA-DropBlock(F_la, maps) = d (training; d = F_la at test); g_d = 2 * GMP(d)

Seven heads (la, d, gs, ps, p0, p1, p2): BN1d -> LeakyReLU(0.1) -> Linear(C -> 512, no bias) ->
BN1d (= the head's feature) -> Linear(512 -> N, no bias, N(0, 0.001)). Five triplet features:
Conv1x1(C -> 256) + BN + ReLU of g_gs, g_ps, g_la, g_d, and a fifth, ``part_triplet``:

* ``head`` (released code, lag.py): the ps head's 512-D feature. The release also builds three
  stripe reductions and concatenates them (768-D), but overwrites that variable with the ps head's
  feature before returning, so they never reach a loss; here they are not built.
* ``stripes``: Conv1x1 + BN + ReLU of p0, p1, p2, concatenated (768-D).

``stripes_from``: ``map`` pools p0..p2 from 3 real stripes of the part map; ``pooled`` reproduces the
release, which pools its "stripes" from the already 1x1 g_ps, so p0 = p1 = p2 = 2 * g_ps.
``init``: ``lagnet`` (the release: reduction convs kaiming fan_in, every head and reduction BN weight
N(1, 0.02)) or ``default`` (fan_out, BN weight 1); see :mod:`reid.models.heads.init`.

Training output: ``{"logits": 7 x [B, N], "triplet_features": [gs, ps, la, d (256), ps head (512) or
stripes (768)], "head_features": 7 x [B, 512], "parts": [B, M, C] (for ``attention_reg``)}``. Eval:
``{"features": [B, 7 * 512]}`` (3584-D), the seven head features concatenated in head order. (As in
every network, ``features`` is the retrieval feature in eval mode; in training mode the networks
whose triplet loss takes a single output name it ``features``, LAG-Net ``triplet_features``.)
"""
from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from reid.checks import Dim, Prob
from reid.models.build import backbone_groups, build_backbone
from reid.models.heads import InitScheme, StripePool, avg_max, init_classifier, init_kaiming, init_scheme
from reid.models.layers import LAS, BADropBlock
from reid.models.layers.common import conv_bn, same_start
from reid.models.layers.las import LasPooling
from reid.registry import MODELS, ConfigError, suggestion

HEAD_NAMES = ("la", "d", "gs", "ps", "p0", "p1", "p2")
PartTriplet = Literal["head", "stripes"]
PART_TRIPLETS = get_args(PartTriplet)
StripeSource = Literal["map", "pooled"]
STRIPE_SOURCES = get_args(StripeSource)


class LAGHead(nn.Module):
    """x [B, C] -> BN1d -> LeakyReLU(0.1) -> Linear(C -> D, no bias) -> BN1d = f [B, D];
    logits = Linear(D -> N, no bias)(f)."""

    def __init__(self, in_dim: int, num_classes: int, dim: int = 512, scheme: InitScheme | None = None):
        super().__init__()
        self.embed = nn.Sequential(nn.BatchNorm1d(in_dim), nn.LeakyReLU(0.1, inplace=True),
                                   nn.Linear(in_dim, dim, bias=False), nn.BatchNorm1d(dim))
        self.embed.apply(init_kaiming)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        init_classifier(self.classifier)
        if scheme is not None:
            scheme.apply(self.embed, self.classifier)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        f = self.embed(x)
        return f, (self.classifier(f) if self.training else None)


def conv_reduction(in_dim: int, dim: int, scheme: InitScheme | None = None) -> nn.Sequential:
    """Conv1x1(in -> dim, no bias) + BN + ReLU on [B, in, 1, 1]."""
    block = conv_bn(in_dim, dim)
    block.apply(init_kaiming if scheme is None else scheme.embedding)
    return block


@MODELS.register("lagnet")
class LAGNet(nn.Module):
    """LAG-Net (see the module docstring).

    ``las_pooling``: add (released code) | mul (WS-DAN attention pooling); ``num_parts``: M;
    ``drop_threshold``: BA-DropBlock's theta; ``use_drop``: the BA-DropBlock branch (d head);
    ``embed_dim``/``triplet_dim``: head and triplet-reduction widths; ``stripes``: part stripes;
    ``part_triplet``: head | stripes, ``stripes_from``: map | pooled, ``init``: an init scheme;
    ``same_init``: the triplet reductions start identical (the release deep-copies one), else each
    is drawn on its own.
    The backbone's ``last_stride`` is irrelevant: each stream sets its own layer4 stride.
    """

    def __init__(self, num_classes: int,
                 backbone: dict = {"name": "resnet50", "last_stride": 1},  # noqa: B006
                 las_pooling: LasPooling = "add", num_parts: Dim = 24, drop_threshold: Prob = 0.5,
                 use_drop: bool = True, embed_dim: Dim = 512, triplet_dim: Dim = 256, stripes: Dim = 3,
                 part_triplet: PartTriplet = "head", stripes_from: StripeSource = "map", init: str = "lagnet",
                 same_init: bool = False):
        super().__init__()
        for key, value, choices in (("part_triplet", part_triplet, PART_TRIPLETS),
                                    ("stripes_from", stripes_from, STRIPE_SOURCES)):
            if value not in choices:
                raise ConfigError(f"model.{key}: unknown choice '{value}'{suggestion(str(value), choices)}")
        scheme = init_scheme(init, "model.init")
        self.part_triplet, self.stripes_from = part_triplet, stripes_from
        net = build_backbone(backbone)
        try:
            split = net.split("layer3[0]")
        except ConfigError:
            raise ConfigError("lagnet needs a backbone whose layer3 has at least 2 blocks") from None
        stem, layer1, layer2, layer3_0 = split.trunk
        # flat as before (conv1, bn1, relu, maxpool, layer1, layer2, layer3[0]): checkpoint names unchanged
        self.trunk = nn.Sequential(*stem, layer1, layer2, *layer3_0)
        channels = split.branch_shape.channels

        def stream(stride: int) -> nn.Sequential:
            return nn.Sequential(*split.copy_branch(stride))

        self.global_stream = stream(2)
        self.part_stream = stream(1)
        self.la_stream = stream(1)
        self.stripe_pool = StripePool(stripes, "avgmax")
        self.las = LAS(channels, num_parts=num_parts, pooling=las_pooling)
        self.drop = BADropBlock(channels, threshold=drop_threshold) if use_drop else None
        self.head_names = [n for n in HEAD_NAMES[:4] if n != "d" or use_drop] + [f"p{i}" for i in range(stripes)]
        self.heads = nn.ModuleDict({n: LAGHead(channels, num_classes, embed_dim, scheme) for n in self.head_names})
        self.triplet_names = [n for n in ("gs", "ps", "la", "d") if n in self.head_names]
        self.reductions = nn.ModuleDict({n: conv_reduction(channels, triplet_dim, scheme) for n in self.triplet_names})
        self.triplet_names.append("ps_head" if part_triplet == "head" else "stripes")
        self.stripe_reductions = nn.ModuleList(
            conv_reduction(channels, triplet_dim, scheme) for _ in range(stripes if part_triplet == "stripes" else 0))
        if same_init:  # the release: one reduction initialised, then deep-copied (lag.py:123-132)
            same_start([*self.reductions.values(), *self.stripe_reductions])
        self.feature_dim = embed_dim * len(self.head_names)
        self._backbone_modules = [self.trunk, self.global_stream, self.part_stream, self.la_stream]

    def pooled(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """[B, 3, H, W] -> ({head name: [B, C]}, LAS part vectors [B, M, C])."""
        t = self.trunk(x)
        v = {"gs": avg_max(self.global_stream(t))}
        part = self.part_stream(t)
        v["ps"] = avg_max(part)
        f_la = self.la_stream(t)
        las = self.las(f_la)
        v["la"] = las.global_feature
        if self.drop is not None:
            d = self.drop(f_la, las.attention) if self.training else f_la
            v["d"] = 2.0 * d.amax(dim=(2, 3))
        source = part if self.stripes_from == "map" else v["ps"][:, :, None, None]
        for i, s in enumerate(self.stripe_pool(source)):
            v[f"p{i}"] = s
        return v, las.parts

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Training: logits, triplet_features, head_features, parts; eval: features [B, 7 * 512]."""
        v, parts = self.pooled(x)
        feats, logits = [], []
        for name in self.head_names:
            f, y = self.heads[name](v[name])
            feats.append(f)
            logits.append(y)
        if not self.training:
            return {"features": torch.cat(feats, dim=1)}
        trip = [self.reductions[n](v[n][:, :, None, None]).flatten(1) for n in self.triplet_names[:-1]]
        if self.part_triplet == "head":
            trip.append(feats[self.head_names.index("ps")])
        else:
            stripes = [red(v[f"p{i}"][:, :, None, None]).flatten(1) for i, red in enumerate(self.stripe_reductions)]
            trip.append(torch.cat(stripes, dim=1))
        return {"logits": logits, "triplet_features": trip, "head_features": feats, "parts": parts}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return backbone_groups(self, *self._backbone_modules)

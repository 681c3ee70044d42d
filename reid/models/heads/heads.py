"""Embedding heads: a pooled feature [B, C] -> (triplet feature, test feature, logits).

* ``BNNeckHead`` (BoT): BN1d (bias frozen at 0) -> Linear(no bias, N(0, 0.001)); triplet on the
  pre-BN feature, test feature after (``neck_feat="after"``) or before the BN.
* ``ReductionHead`` (LAGA-Net): Linear(C -> D) -> BN1d -> LeakyReLU(0.1) -> Dropout(0.5), then
  Linear(D -> num_classes); triplet on the D-dim embedding before (default) or after the dropout,
  test feature the input (before reduction).
* ``ConvReductionHead`` (MGN, PCB): Conv1x1(C -> D) + BN + ReLU; triplet and classifier on the D-dim
  reduced feature; test feature the reduced one (``neck_feat="after"``, PCB's "H") or the C-dim input
  (``"before"``, PCB's "G").

Heads are registered in ``reid.registry.HEADS``; a multi-branch config names one per branch as
``head: <name>`` or ``head: {name: <name>, **kwargs}``; the constructor is ``(in_dim, num_classes,
**kwargs)`` and forward returns a :class:`HeadOutput`.

Every head takes ``init``: an init scheme of :mod:`reid.models.heads.init` (``default``: the head's
own initialisation above; ``mgn``, ``bdb``, ``lagnet``: as that network's released code).
"""
from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import torch
from torch import nn

from reid.checks import Dim, NonNegative, Rate
from reid.models.heads.init import init_classifier, init_kaiming, init_laga, init_scheme
from reid.models.layers.common import conv_bn
from reid.registry import HEADS, ConfigError, suggestion

#: The choices of the heads' string keywords (checked when a config loads, where a network exposes them).
NeckFeat = Literal["after", "before"]
TripletInput = Literal["embedding", "dropout"]


class HeadOutput(NamedTuple):
    """feature: for metric losses [B, D]; test: retrieval feature [B, D']; logits [B, N] or None."""

    feature: torch.Tensor
    test: torch.Tensor
    logits: torch.Tensor | None


@HEADS.register("bnneck")
class BNNeckHead(nn.Module):
    """BNNeck: x [B, C] -> BN1d (no bias) -> classifier; ``neck_feat``: "after" | "before"."""

    def __init__(self, in_dim: int, num_classes: int, neck_feat: NeckFeat = "after", init: str = "default"):
        super().__init__()
        if neck_feat not in ("after", "before"):
            raise ConfigError(f"neck_feat must be 'after' or 'before', got '{neck_feat}'")
        scheme = init_scheme(init)
        self.neck_feat = neck_feat
        self.out_dim = in_dim
        self.test_dim = in_dim
        self.bn = nn.BatchNorm1d(in_dim)
        self.bn.bias.requires_grad_(False)
        init_kaiming(self.bn)
        self.classifier = nn.Linear(in_dim, num_classes, bias=False)
        init_classifier(self.classifier)
        if scheme is not None:
            scheme.apply(self.bn, self.classifier)

    def forward(self, x: torch.Tensor) -> HeadOutput:
        bn = self.bn(x)
        logits = self.classifier(bn) if self.training else None
        return HeadOutput(x, bn if self.neck_feat == "after" else x, logits)


#: ReductionHead's triplet feature: the learned embedding (before dropout) or the dropped-out one
TRIPLET_INPUTS = get_args(TripletInput)


@HEADS.register("reduction")
class ReductionHead(nn.Module):
    """LAGA-Net: x [B, C] -> Linear(C -> D) -> BN1d -> LeakyReLU(0.1) = e [B, D] -> Dropout(p) = d;
    logits = Linear(D -> num_classes)(d); test feature = x; triplet feature e (``triplet_input=
    "embedding"``, the paper's learned embedding) or d (``"dropout"``)."""

    def __init__(self, in_dim: int, num_classes: int, dim: Dim = 1024, dropout: Rate = 0.5,
                 negative_slope: NonNegative = 0.1, init: str = "default", triplet_input: TripletInput = "embedding"):
        super().__init__()
        scheme = init_scheme(init)
        if triplet_input not in TRIPLET_INPUTS:
            raise ConfigError(f"unknown triplet_input '{triplet_input}'{suggestion(triplet_input, TRIPLET_INPUTS)}")
        self.triplet_input = triplet_input
        self.out_dim, self.test_dim = dim, in_dim
        self.reduction = nn.Sequential(nn.Linear(in_dim, dim), nn.BatchNorm1d(dim),
                                       nn.LeakyReLU(negative_slope, inplace=True), nn.Dropout(dropout))
        self.reduction.apply(init_laga)
        self.classifier = nn.Linear(dim, num_classes)
        init_classifier(self.classifier)
        if scheme is not None:
            scheme.apply(self.reduction, self.classifier)

    def forward(self, x: torch.Tensor) -> HeadOutput:
        if not self.training:
            return HeadOutput(x, x, None)
        e = self.reduction[:-1](x)
        d = self.reduction[-1](e)
        return HeadOutput(e if self.triplet_input == "embedding" else d, x, self.classifier(d))


@HEADS.register("conv_reduction")
class ConvReductionHead(nn.Module):
    """MGN: x [B, C] -> Conv1x1(C -> D, no bias) + BN + ReLU = r [B, D]; logits = Linear(D -> N)(r);
    triplet feature r; test feature r (``neck_feat="after"``) or x [B, C] (``"before"``).
    ``input_dropout``: Dropout(p) on x before the reduction in training (PCB's release: 0.5)."""

    def __init__(self, in_dim: int, num_classes: int, dim: Dim = 256, neck_feat: NeckFeat = "after",
                 init: str = "default", input_dropout: Rate = 0.0):
        super().__init__()
        if neck_feat not in ("after", "before"):
            raise ConfigError(f"neck_feat must be 'after' or 'before', got '{neck_feat}'")
        if not 0.0 <= input_dropout < 1.0:
            raise ConfigError(f"conv_reduction input_dropout must be in [0, 1), got {input_dropout}")
        scheme = init_scheme(init)
        self.neck_feat = neck_feat
        self.drop = nn.Dropout(input_dropout) if input_dropout > 0 else nn.Identity()
        self.out_dim = dim
        self.test_dim = dim if neck_feat == "after" else in_dim
        self.reduction = conv_bn(in_dim, dim)
        self.reduction.apply(init_kaiming)
        self.classifier = nn.Linear(dim, num_classes)
        init_kaiming(self.classifier)
        nn.init.normal_(self.classifier.weight, 0.0, 0.001)
        if scheme is not None:
            scheme.apply(self.reduction, self.classifier)

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C] -> dropout (training) -> Conv1x1 + BN + ReLU -> [N, D]."""
        return self.reduction(self.drop(x)[:, :, None, None]).flatten(1)

    def from_reduced(self, x: torch.Tensor, r: torch.Tensor) -> HeadOutput:
        """The head's outputs from its input x [B, C] and its reduced feature r [B, D]."""
        return HeadOutput(r, r if self.neck_feat == "after" else x, self.classifier(r) if self.training else None)

    def forward(self, x: torch.Tensor) -> HeadOutput:
        return self.from_reduced(x, self.reduce(x))


@HEADS.register("identity")
class IdentityHead(nn.Module):
    """No embedding: x [B, C] -> Linear(C -> N) classifier; triplet and test feature x."""

    def __init__(self, in_dim: int, num_classes: int, init: str = "default"):
        super().__init__()
        scheme = init_scheme(init)
        self.out_dim = self.test_dim = in_dim
        self.classifier = nn.Linear(in_dim, num_classes)
        init_classifier(self.classifier)
        if scheme is not None:
            scheme.apply(None, self.classifier)

    def forward(self, x: torch.Tensor) -> HeadOutput:
        return HeadOutput(x, x, self.classifier(x) if self.training else None)


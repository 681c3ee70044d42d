"""Mask-guided attention of MMGA (Cai et al., CVPRW 2019; models.md "MMGA").

Source features X [B, C, H, W] give M spatial maps; target features T [B, C_t, H_t, W_t]
(T = X when no target is passed) receive them together with SE channel attention over C_t::

    S   = sigmoid(Conv1x1(C/s -> M)(ReLU(BN(Conv1x1(C -> C/s)(X)))))     [B, M, H, W]
    S'  = adaptive average pooling of S to H_t x W_t (e.g. 2x for layer2 -> layer3)
    c   = sigmoid(FC(C_t/r -> C_t)(ReLU(FC(C_t -> C_t/r)(GAP(T)))))      [B, C_t]  (SE)
    O_m = T * S'_m * c                                                  one feature per map m

S (at source resolution) is returned for the mask loss (RMSE against the area-resized masks).
"""
from __future__ import annotations

from typing import Annotated, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from reid.checks import Dim, Nullable, Range
from reid.models.layers.common import check_feature_map, conv_bn
from reid.registry import LAYERS


class MMGAOutput(NamedTuple):
    """features: one attended target per map, each [B, C_t, H_t, W_t]; maps: S [B, M, H, W]
    (sigmoid, source resolution); channel: the SE weights c [B, C_t]."""

    features: list[torch.Tensor]
    maps: torch.Tensor
    channel: torch.Tensor


class SEAttention(nn.Module):
    """Squeeze-and-excitation weights: [B, C, H, W] -> sigmoid channel weights [B, C]."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(x.mean(dim=(2, 3))))


@LAYERS.register("mmga")
class MaskGuidedAttention(nn.Module):
    """forward(x [B, C, H, W], target [B, C_t, H_t, W_t] | None = None) -> MMGAOutput.

    ``target_channels`` (None: ``channels``) (attend the input itself); ``num_maps`` is 1
    (whole body) or 3 (whole, upper, lower); ``reduction`` is s, ``se_reduction`` the SE r.
    """

    def __init__(self, channels: int, target_channels: Annotated[int | None, Nullable(Range(1))] = None,
                 num_maps: Dim = 1, reduction: Dim = 16, se_reduction: Dim = 16):
        super().__init__()
        self.channels = channels
        self.target_channels = target_channels or channels
        self.num_maps = num_maps
        self.spatial = nn.Sequential(
            conv_bn(channels, max(1, channels // reduction)),
            nn.Conv2d(max(1, channels // reduction), num_maps, kernel_size=1),
        )
        self.se = SEAttention(self.target_channels, se_reduction)

    def spatial_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Sigmoid spatial maps S [B, M, H, W], values in (0, 1)."""
        return torch.sigmoid(self.spatial(x))

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> MMGAOutput:
        check_feature_map(x, self.channels, None, "MMGA")
        target = x if target is None else target
        check_feature_map(target, self.target_channels, None, "MMGA target")
        if target.shape[0] != x.shape[0]:
            raise ValueError("MMGA: source and target batch sizes differ")
        maps = self.spatial_maps(x)
        applied = maps
        if maps.shape[2:] != target.shape[2:]:
            applied = F.adaptive_avg_pool2d(maps, target.shape[2:])
        channel = self.se(target)
        weighted = target * channel[:, :, None, None]
        features = [weighted * applied[:, m:m + 1] for m in range(self.num_maps)]
        return MMGAOutput(features, maps, channel)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, target_channels={self.target_channels}, num_maps={self.num_maps}"

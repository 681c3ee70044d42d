"""Local Attention System (LAS) of LAG-Net (models.md, "LAG-Net").

F [B, C, H, W]; A = ReLU(BN_eps=1e-3(Conv1x1(C -> C, bias False)(F)))  [B, C, H, W].
Per sample keep the M attention channels with the largest spatial sum sum_{h,w} A_k (descending),
A_sel [B, M, H, W]. Part vector k (``pooling``: "add", the released code, or "mul", WS-DAN's
attention pooling)::

    part_k = GAP(F op A_k) + GMP(F op A_k)        [B, C],  op = + | *  (A_k broadcast over C)
    g_la   = max_k part_k + mean_k part_k         [B, C]
"""
from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import torch
from torch import nn

from reid.checks import Dim, Positive
from reid.models.layers.common import check_feature_map, conv_bn
from reid.registry import LAYERS, ConfigError, suggestion

LasPooling = Literal["add", "mul"]
LAS_POOLINGS = get_args(LasPooling)


class LASOutput(NamedTuple):
    """parts [B, M, C]; attention: the selected maps [B, M, H, W]; indices [B, M] (channel of
    each selected map, by descending spatial sum); global_feature g_la [B, C]."""

    parts: torch.Tensor
    attention: torch.Tensor
    indices: torch.Tensor
    global_feature: torch.Tensor


def select_top_maps(attention: torch.Tensor, num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample the ``num`` maps with the largest spatial sum: ([B, num, H, W], indices [B, num])."""
    indices = attention.sum(dim=(2, 3)).topk(num, dim=1, sorted=True).indices
    h, w = attention.shape[2:]
    maps = attention.gather(1, indices[:, :, None, None].expand(-1, -1, h, w))
    return maps, indices


def attention_pool(features: torch.Tensor, maps: torch.Tensor, op: str) -> torch.Tensor:
    """part_k = GAP(F op A_k) + GMP(F op A_k): features [B, C, H, W], maps [B, M, H, W] -> [B, M, C].

    One [B, C, H*W] temporary per part (a loop over the M parts, not over positions) keeps memory
    at the size of F.
    """
    flat = features.flatten(2)  # [B, C, N]
    parts = []
    for k in range(maps.shape[1]):
        a = maps[:, k].flatten(1).unsqueeze(1)  # [B, 1, N]
        z = flat + a if op == "add" else flat * a
        parts.append(z.mean(dim=-1) + z.max(dim=-1).values)
    return torch.stack(parts, dim=1)


@LAYERS.register("las")
class LAS(nn.Module):
    """Local Attention System; forward(F [B, C, H, W]) -> LASOutput (see the module docstring)."""

    def __init__(self, channels: int, num_parts: Dim = 24, pooling: LasPooling = "add", bn_eps: Positive = 1e-3):
        super().__init__()
        if pooling not in LAS_POOLINGS:
            raise ConfigError(f"LAS pooling: unknown choice '{pooling}'{suggestion(str(pooling), LAS_POOLINGS)}")
        if not 1 <= num_parts <= channels:
            raise ValueError(f"LAS: num_parts must be in [1, {channels}], got {num_parts}")
        self.channels, self.num_parts, self.pooling = channels, num_parts, pooling
        self.attention = conv_bn(channels, channels, eps=bn_eps)
        nn.init.kaiming_normal_(self.attention[0].weight, mode="fan_in")  # as the released code

    def attention_maps(self, x: torch.Tensor) -> torch.Tensor:
        """All C attention maps A [B, C, H, W] (non-negative)."""
        return self.attention(x)

    def forward(self, x: torch.Tensor) -> LASOutput:
        check_feature_map(x, self.channels, None, "LAS")
        maps, indices = select_top_maps(self.attention_maps(x), self.num_parts)
        parts = attention_pool(x, maps, self.pooling)
        g_la = parts.max(dim=1).values + parts.mean(dim=1)
        return LASOutput(parts, maps, indices, g_la)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_parts={self.num_parts}, pooling={self.pooling}"

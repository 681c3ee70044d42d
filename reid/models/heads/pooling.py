"""Poolings of a feature map [B, C, H, W] into vectors: GAP, GMP, GAP+GMP, GeM, horizontal stripes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reid.registry import ConfigError, suggestion

POOLINGS = ("avg", "max", "avgmax", "gem", "stripes")


class GlobalPool(nn.Module):
    """[B, C, H, W] -> [B, C]: ``avg`` | ``max`` | ``avgmax`` (GAP + GMP, summed) | ``gem`` (p = 3)."""

    def __init__(self, mode: str = "avg", p: float = 3.0):
        super().__init__()
        if mode not in POOLINGS[:4]:
            raise ConfigError(f"unknown pooling '{mode}'{suggestion(mode, POOLINGS)}")
        self.mode, self.p = mode, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "avg":
            return x.mean(dim=(2, 3))
        if self.mode == "max":
            return x.amax(dim=(2, 3))
        if self.mode == "avgmax":
            return x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))
        return x.clamp(min=1e-6).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


class StripePool(nn.Module):
    """[B, C, H, W] -> K stripe vectors [B, C] each: the map cut into K horizontal bands (rows split
    as evenly as adaptive pooling does), each pooled by ``mode`` (avg | max | avgmax)."""

    def __init__(self, stripes: int, mode: str = "avg"):
        super().__init__()
        if stripes < 1:
            raise ConfigError(f"stripes must be >= 1, got {stripes}")
        if mode not in ("avg", "max", "avgmax"):
            raise ConfigError(f"unknown stripe pooling '{mode}'{suggestion(mode, ('avg', 'max', 'avgmax'))}")
        self.stripes, self.mode = stripes, mode

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        size = (self.stripes, 1)
        if self.mode == "avg":
            y = F.adaptive_avg_pool2d(x, size)
        elif self.mode == "max":
            y = F.adaptive_max_pool2d(x, size)
        else:
            y = F.adaptive_avg_pool2d(x, size) + F.adaptive_max_pool2d(x, size)
        return list(y.flatten(2).unbind(dim=2))

    def extra_repr(self) -> str:
        return f"stripes={self.stripes}, mode={self.mode}"


def build_pooling(mode: str, stripes: int = 0) -> nn.Module:
    """``stripes > 0`` (or ``mode == "stripes"``) gives a StripePool, otherwise a GlobalPool."""
    if mode == "stripes":
        return StripePool(stripes or 1, "avg")
    if stripes:
        return StripePool(stripes, mode)
    return GlobalPool(mode)

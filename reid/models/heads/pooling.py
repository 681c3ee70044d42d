"""Poolings of a feature map [B, C, H, W] into vectors: GAP, GMP, GAP+GMP, GeM, horizontal stripes.

The global poolings are registered in ``reid.registry.POOLINGS`` (a multi-branch config names one
per branch as ``pooling: <name>`` or ``pooling: {name: <name>, **kwargs}``): a factory returning a
module [B, C, H, W] -> [B, C]."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reid.checks import Positive
from reid.registry import POOLINGS, ConfigError, suggestion

GLOBAL_MODES = ("avg", "max", "avgmax", "gem")
STRIPE_MODES = ("avg", "max", "avgmax")


def avg_max(x: torch.Tensor) -> torch.Tensor:
    """GAP + GMP: [B, C, H, W] -> [B, C]."""
    return x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))


class GlobalPool(nn.Module):
    """[B, C, H, W] -> [B, C]: ``avg`` | ``max`` | ``avgmax`` (GAP + GMP, summed) | ``gem`` (p = 3)."""

    def __init__(self, mode: str = "avg", p: float = 3.0):
        super().__init__()
        if mode not in GLOBAL_MODES:
            raise ConfigError(f"unknown pooling '{mode}'{suggestion(mode, GLOBAL_MODES)}")
        self.mode, self.p = mode, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "avg":
            return x.mean(dim=(2, 3))
        if self.mode == "max":
            return x.amax(dim=(2, 3))
        if self.mode == "avgmax":
            return avg_max(x)
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
        if mode not in STRIPE_MODES:
            raise ConfigError(f"unknown stripe pooling '{mode}'{suggestion(mode, STRIPE_MODES)}")
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


@POOLINGS.register("avg")
def avg_pooling() -> GlobalPool:
    """GAP."""
    return GlobalPool("avg")


@POOLINGS.register("max")
def max_pooling() -> GlobalPool:
    """GMP."""
    return GlobalPool("max")


@POOLINGS.register("avgmax")
def avgmax_pooling() -> GlobalPool:
    """GAP + GMP, summed (LAG-Net's pooling)."""
    return GlobalPool("avgmax")


@POOLINGS.register("gem")
def gem_pooling(p: Positive = 3.0) -> GlobalPool:
    """Generalised mean pooling with exponent ``p``."""
    return GlobalPool("gem", p)


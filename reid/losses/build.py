"""A set of weighted losses built from the ``losses`` config section."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from reid.registry import LOSSES, ConfigError


class LossSet(nn.Module):
    """``LossSet(outputs, batch) -> (total, {label: value})``: total = sum of weight * loss; the
    values are each loss's unweighted value, detached."""

    def __init__(self, losses: Mapping[str, nn.Module], weights: Mapping[str, float]):
        super().__init__()
        self.losses = nn.ModuleDict(dict(losses))
        self.weights = dict(weights)

    def forward(self, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total: torch.Tensor | None = None
        parts: dict[str, torch.Tensor] = {}
        for label, loss in self.losses.items():
            value = loss(outputs, batch)
            parts[label] = value.detach()
            weighted = self.weights[label] * value
            total = weighted if total is None else total + weighted
        if total is None:
            raise ConfigError("no losses configured (the 'losses' section is empty)")
        return total, parts


def build_losses(losses_cfg: Mapping[str, Any]) -> LossSet:
    """``{label: {"name": ..., "weight": w, **kwargs}}`` -> LossSet (``null`` entries skipped)."""
    losses, weights = {}, {}
    for label, spec in losses_cfg.items():
        if spec is None:
            continue
        spec = dict(spec)
        name = spec.pop("name", label)
        weights[label] = float(spec.pop("weight", 1.0))
        losses[label] = LOSSES.build(name, where=f"losses.{label}", **spec)
    return LossSet(losses, weights)

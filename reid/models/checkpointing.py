"""Activation checkpointing of chosen modules (``train.checkpoint_modules``): their activations are
not kept for backward but recomputed then, trading time for memory. The BatchNorm running
statistics are not updated twice (see :func:`reid.models.layers.common.checkpointed`), so a
checkpointed network trains exactly as the plain one."""
from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Callable, Sequence

import torch
from torch import nn

from reid.models.layers.common import checkpointed
from reid.registry import ConfigError, suggestion


class _Forward(nn.Module):
    """``module``'s original forward as a module of its own (what ``checkpointed`` runs twice)."""

    def __init__(self, module: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.inner, self._forward = module, forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)


def _checkpointed_forward(module: nn.Module) -> Callable[..., torch.Tensor]:
    original = module.forward

    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if args or kwargs or not (module.training and torch.is_grad_enabled()):
            return original(x, *args, **kwargs)
        return checkpointed(_Forward(module, original), x)

    return forward


def checkpoint_modules(model: nn.Module, patterns: Sequence[str], where: str = "train.checkpoint_modules") -> list[str]:
    """Checkpoint the modules of ``model`` whose names (``model.named_modules()``) match one of the
    shell-style ``patterns`` (``*`` matches dots too; a module inside another chosen one is left to
    its parent). Returns the names chosen. A pattern matching nothing is a ConfigError naming the
    closest module. The modules must take one tensor (backbone stages, attention layers, branches)."""
    names = [name for name, _ in model.named_modules() if name]
    chosen: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if fnmatchcase(n, pattern)]
        if not hits:
            raise ConfigError(f"{where}: no module of this model is named like '{pattern}'"
                              f"{suggestion(pattern, names)}")
        chosen += [n for n in hits if n not in chosen]
    outer = [n for n in chosen if not any(n.startswith(p + ".") for p in chosen)]
    modules = dict(model.named_modules())
    for name in outer:
        modules[name].forward = _checkpointed_forward(modules[name])
    return outer

"""Optimiser builder: parameter groups with learning-rate multipliers (backbone vs new layers)."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from reid.registry import ConfigError, suggestion

OPTIMIZERS = ("adam", "adamw", "sgd")


def _model_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    groups = model.param_groups() if hasattr(model, "param_groups") else {"new": list(model.parameters())}
    seen: set[int] = set()
    out: dict[str, list[nn.Parameter]] = {}
    for name, params in groups.items():
        kept = [p for p in params if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in kept)
        if kept:
            out[name] = kept
    missing = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        out.setdefault("new", []).extend(missing)
    return out


def build_optimizer(cfg: Mapping[str, Any], model: nn.Module, fused: bool | None = None) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD over the model's parameter groups.

    ``cfg`` is the ``optimizer`` config section. Each group's lr is ``lr * lr_mults.get(group, 1)``
    (stored as ``initial_lr`` for the schedule). With ``bias_weight_decay: false`` biases and
    normalisation parameters (ndim <= 1) get no weight decay. ``fused`` uses the fused CUDA kernels
    where PyTorch has them (default: when every parameter is on CUDA).
    """
    name = cfg["name"]
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer.name '{name}'{suggestion(name, OPTIMIZERS)}")
    groups = _model_groups(model)
    unknown = [g for g in cfg["lr_mults"] if g not in groups]
    if unknown:
        raise ConfigError(
            f"optimizer.lr_mults names unknown parameter group '{unknown[0]}'"
            f"{suggestion(unknown[0], groups)}"
        )
    param_groups = []
    for gname, params in groups.items():
        lr = float(cfg["lr"]) * float(cfg["lr_mults"].get(gname, 1.0))
        if cfg["bias_weight_decay"]:
            param_groups.append({"params": params, "lr": lr, "initial_lr": lr, "name": gname,
                                 "weight_decay": float(cfg["weight_decay"])})
        else:
            decay = [p for p in params if p.ndim > 1]
            no_decay = [p for p in params if p.ndim <= 1]
            for ps, wd, suffix in ((decay, float(cfg["weight_decay"]), ""), (no_decay, 0.0, ".no_decay")):
                if ps:
                    param_groups.append({"params": ps, "lr": lr, "initial_lr": lr, "name": gname + suffix,
                                         "weight_decay": wd})
    if fused is None:
        fused = all(p.is_cuda for g in param_groups for p in g["params"])
    extra = {"fused": True} if fused else {}
    if name == "adam":
        return torch.optim.Adam(param_groups, lr=float(cfg["lr"]), betas=tuple(cfg["betas"]),
                                amsgrad=bool(cfg["amsgrad"]), **extra)
    if name == "adamw":
        return torch.optim.AdamW(param_groups, lr=float(cfg["lr"]), betas=tuple(cfg["betas"]),
                                 amsgrad=bool(cfg["amsgrad"]), **extra)
    return torch.optim.SGD(param_groups, lr=float(cfg["lr"]), momentum=float(cfg["momentum"]),
                           nesterov=bool(cfg["nesterov"]), **extra)

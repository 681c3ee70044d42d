"""Model and backbone construction from config sections, and a parameter-count summary."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import nn

from reid.registry import BACKBONES, MODELS, ConfigError


def build_backbone(spec: Mapping[str, Any]) -> nn.Module:
    """A backbone (:class:`reid.models.backbones.Backbone`) from its section ``{name: ..., **kwargs}``."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"model.backbone needs a 'name' (one of {', '.join(BACKBONES.names())})")
    return BACKBONES.build(name, where="model.backbone", **spec)


def build_model(model_cfg: Mapping[str, Any], num_classes: int, input_size: Sequence[int] | None = None) -> nn.Module:
    """Build the model named by ``model_cfg["name"]`` with its keyword options.

    ``num_classes`` is injected. ``input_size`` ((H, W) of the network input, i.e. ``cfg.input.size``)
    fills a model's ``input_size`` option when the config leaves it null: networks whose layers
    depend on the feature-map size (SAM-RPE, RGA) are built for it.
    """
    cfg = dict(model_cfg)
    name = cfg.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"model needs a 'name' (one of {', '.join(MODELS.names())})")
    if "input_size" in MODELS.parameters(name) and cfg.get("input_size") is None and input_size is not None:
        cfg["input_size"] = [int(v) for v in input_size]
    return MODELS.build(name, num_classes, where="model", **cfg)


def backbone_groups(model: nn.Module, *backbone_modules: nn.Module) -> dict[str, list[nn.Parameter]]:
    """``{"backbone": parameters of backbone_modules, "new": every other parameter of model}``,
    each parameter once: the groups ``optimizer.lr_mults`` scales."""
    backbone = list({id(p): p for m in backbone_modules for p in m.parameters()}.values())
    ids = {id(p) for p in backbone}
    return {"backbone": backbone, "new": [p for p in model.parameters() if id(p) not in ids]}


def count(params) -> tuple[int, int]:
    """(total, trainable) element counts of an iterable of parameters (each counted once)."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in params}
    total = sum(p.numel() for p in seen.values())
    return total, sum(p.numel() for p in seen.values() if p.requires_grad)


def summary(model: nn.Module) -> str:
    """A table of parameter counts: total, trainable, and per top-level child (and per group)."""
    total, trainable = count(model.parameters())
    lines = [f"model: {type(model).__name__}", f"{'part':<32} {'parameters':>14} {'trainable':>14}"]
    for name, child in model.named_children():
        t, tr = count(child.parameters())
        lines.append(f"{name:<32} {t:>14,} {tr:>14,}")
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):  # e.g. the branches of a multi-branch net
            for sub, module in child.named_children():
                label = f"  {name}.{sub}" + (f" ({module.spec.name})" if hasattr(module, "spec") else "")
                t, tr = count(module.parameters())
                lines.append(f"{label:<32} {t:>14,} {tr:>14,}")
    own = [p for n, p in model.named_parameters(recurse=False)]
    if own:
        t, tr = count(own)
        lines.append(f"{'(own)':<32} {t:>14,} {tr:>14,}")
    if hasattr(model, "param_groups"):
        for group, ps in model.param_groups().items():
            t, tr = count(ps)
            lines.append(f"{'group ' + group:<32} {t:>14,} {tr:>14,}")
    lines.append(f"{'total':<32} {total:>14,} {trainable:>14,}")
    return "\n".join(lines)

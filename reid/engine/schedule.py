"""Learning-rate schedules: linear warmup, then multi-step (gamma or explicit factors), cosine or constant."""
from __future__ import annotations

import math
from typing import Any, Mapping

from reid.registry import ConfigError, suggestion

#: ``schedule.name`` values (checked when the config loads; the error here guards direct calls).
SCHEDULES = ("multistep", "cosine", "constant")


def lr_factor(epoch: int, schedule: Mapping[str, Any], base_lr: float, epochs: int) -> float:
    """Multiplier of the base learning rate at ``epoch`` (0-based).

    Warmup: linear from ``warmup_start_lr`` (absolute) to ``base_lr`` over ``warmup_epochs``, i.e.
    ``lr(e) = start + (base - start) * e / warmup_epochs`` for ``e < warmup_epochs``. After it:
    ``multistep`` multiplies by ``gamma`` at each milestone reached (``e >= m``), or, when ``factors``
    is not empty (one more entry than the increasing ``milestones``), takes ``factors[k]`` after k
    milestones (a piecewise-constant schedule, e.g. a staircase warmup); ``cosine`` anneals from
    ``base_lr`` to ``min_lr`` over the remaining epochs; ``constant`` keeps ``base_lr``.
    """
    warmup = int(schedule["warmup_epochs"])
    if epoch < warmup:
        start = float(schedule["warmup_start_lr"]) / base_lr
        return start + (1.0 - start) * epoch / warmup
    name = schedule["name"]
    if name == "multistep":
        milestones = list(schedule["milestones"])
        passed = sum(1 for m in milestones if epoch >= m)
        factors = list(schedule.get("factors") or [])
        if not factors:
            return float(schedule["gamma"]) ** passed
        if len(factors) != len(milestones) + 1 or milestones != sorted(milestones):
            raise ConfigError(f"schedule.factors needs one more entry than the increasing schedule.milestones, "
                              f"got {len(factors)} factors for milestones {milestones}")
        return float(factors[passed])
    if name == "cosine":
        span = max(1, epochs - warmup)
        t = min(1.0, (epoch - warmup) / span)
        floor = float(schedule["min_lr"]) / base_lr
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    if name == "constant":
        return 1.0
    raise ConfigError(f"unknown schedule.name '{name}'{suggestion(name, SCHEDULES)}")


def set_lr(optimizer, factor: float) -> None:
    """Set each parameter group's lr to ``factor * group['initial_lr']``."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor

"""Where and how reproducibly a run computes: the torch device from ``cfg.device``, the seeds."""
from __future__ import annotations

import random

import numpy as np
import torch

from reid.registry import ConfigError


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda``/``cuda:N``/``cpu`` are taken as given (the
    form is checked when the config loads; that CUDA is present only here)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{spec}' requested but CUDA is not available; use device=cpu")
    try:
        return torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"device '{spec}' is not a valid torch device (auto, cpu, cuda, cuda:N)") from None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU runs are then reproducible)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

"""Checkpoints written atomically (temp file + rename), so a crash never leaves a broken file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from reid.registry import UserError


class CheckpointError(UserError, ValueError):
    """A checkpoint file is missing or is not a reid checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (or a bare model state dict)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(state).__name__}")
    if "model" not in state:
        state = {"model": state}
    return state


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the underlying model (unwrapping DDP and torch.compile)."""
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    return inner.state_dict()

"""Checkpoints: written atomically (a crash never leaves a broken file) and read with
``torch.load(weights_only=True)``, so a checkpoint can hold tensors and plain Python data only and
loading one never runs code from it.

A checkpoint is a dict: state dicts (``model``, ``optimizer``, ``scaler``, ``losses``) and plain
metadata (dicts, lists, str, int, float, bool, None). :func:`to_plain` turns metadata into those
types; :func:`save_checkpoint` refuses anything else before writing, so every checkpoint reid
writes is one reid can read.
"""
from __future__ import annotations

import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from reid.atomic_io import atomic_write
from reid.registry import UserError


class CheckpointError(UserError, ValueError):
    """A checkpoint file is missing or is not a reid checkpoint."""


#: Types a checkpoint may hold (exact types: a numpy float64 or a Config, subclasses of float and
#: dict, would need code of their own to unpickle).
PLAIN_LEAVES = (str, int, float, bool, type(None), bytes, torch.Tensor, torch.Size, torch.dtype)
PLAIN_CONTAINERS = (dict, OrderedDict, list, tuple)


def to_plain(value: Any) -> Any:
    """``value`` as plain Python data: mappings -> dict, tuples -> list, numpy scalars and arrays ->
    Python numbers and lists, paths -> str; tensors and plain values are kept."""
    if isinstance(value, Mapping):
        return {to_plain(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):  # subclasses (IntEnum, ...) -> the base type
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, torch.Tensor):
        return value
    raise TypeError(f"{type(value).__module__}.{type(value).__name__} is not plain checkpoint data")


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """Raise TypeError naming the first entry of ``value`` that ``weights_only`` loading refuses."""
    kind = type(value)
    if kind in PLAIN_CONTAINERS:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if type(key) not in PLAIN_LEAVES:
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}; checkpoints hold plain types only")
            check_plain(item, f"{where}[{key!r}]")
    elif kind not in PLAIN_LEAVES and not isinstance(value, torch.Tensor):  # Parameter, ...
        raise TypeError(f"{where} is a {kind.__module__}.{kind.__qualname__}; checkpoints hold tensors and "
                        "plain types only (convert it with reid.engine.checkpoint.to_plain)")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically; ``state`` must hold tensors and plain types only."""
    check_plain(state)
    atomic_write(path, lambda f: torch.save(state, f))


def _refusal(path: Path, message: str) -> str:
    """The one-line error for a file ``weights_only`` loading refuses (``message``: torch's)."""
    found = re.search(r"GLOBAL (\S+)", message)
    what = f" ({found.group(1)})" if found else ""
    return (f"{path}: contains non-tensor Python objects{what} that reid refuses to unpickle, as loading "
            "them could run code; use a checkpoint written by reid, or, if you trust the file, load it once "
            "with torch.load(weights_only=False) and torch.save its state dicts as plain dicts of tensors")


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (or a bare model state dict) with
    ``weights_only=True``; a file holding other Python objects is refused (CheckpointError)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only's refusals, or a broken pickle
        detail = str(exc).split("WeightsUnpickler error:", 1)[-1].strip()
        if "GLOBAL" in detail:  # a class or function to call: what code execution needs
            raise CheckpointError(_refusal(path, detail)) from None
        detail = detail.splitlines()[0] if detail else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({detail})") from None
    except Exception as exc:  # noqa: BLE001 - any other failure is a broken or foreign file
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({detail})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(state).__name__}")
    if "model" not in state:
        if not all(isinstance(v, torch.Tensor) for v in state.values()):
            keys = ", ".join(sorted(map(str, state))[:5])
            raise CheckpointError(f"{path}: holds no model weights: neither a 'model' entry nor a state dict of "
                                  f"tensors (its keys: {keys})")
        state = {"model": state}
    return state


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the underlying model (unwrapping DDP and torch.compile)."""
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    return inner.state_dict()

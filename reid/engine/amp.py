"""Numerics of a training step: the parameter dtype (``train.dtype``), mixed precision
(``train.amp``: the autocast dtype and the fp16 gradient scaler) and the update itself."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from reid.registry import ConfigError, suggestion

#: ``train.dtype`` -> parameter dtype (float64: exact numerics checks, e.g. DDP equivalence).
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: ``train.amp`` modes.
AMP_MODES = ("auto", "off", "bf16", "fp16")


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` (None: full precision); ``auto``: bf16 on CUDA."""
    if mode == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if mode == "off":
        return None
    if mode in ("bf16", "fp16"):
        return torch.bfloat16 if mode == "bf16" else torch.float16
    raise ConfigError(f"train.amp must be auto, off, bf16 or fp16, got '{mode}'{suggestion(mode, AMP_MODES)}")


def grad_scaler(dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """The loss scaler fp16 autocast needs (None for bf16 and full precision)."""
    return torch.amp.GradScaler("cuda") if dtype == torch.float16 else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The forward pass's autocast context (a no-op for full precision)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def backward(total: torch.Tensor, scaler: torch.amp.GradScaler | None = None) -> None:
    """Backward of the loss ``total`` (loss-scaled with ``scaler``): the step's first phase ends."""
    (scaler.scale(total) if scaler else total).backward()


def optimizer_update(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
                     parameters: Any = None, grad_clip: float = 0.0) -> None:
    """Unscale (with ``scaler``), clip the gradients of ``parameters`` when ``grad_clip`` > 0, and
    step the optimiser: the step's second phase."""
    if scaler:
        scaler.unscale_(optimizer)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(parameters, float(grad_clip))
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def backward_and_step(total: torch.Tensor, optimizer: torch.optim.Optimizer,
                      scaler: torch.amp.GradScaler | None = None,
                      parameters: Any = None, grad_clip: float = 0.0) -> None:
    """zero_grad, backward (loss-scaled with ``scaler``), gradient clipping of ``parameters`` when
    ``grad_clip`` > 0, optimiser step: the update of one training step."""
    optimizer.zero_grad(set_to_none=True)
    backward(total, scaler)
    optimizer_update(optimizer, scaler, parameters, grad_clip)


class CastInput(torch.nn.Module):
    """Runs ``model`` (float64) on float32 inputs and returns float32 outputs (evaluation)."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> Any:
        out = self.model(x.to(self.dtype))
        if isinstance(out, dict):
            return {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                    for k, v in out.items()}
        return out.float()

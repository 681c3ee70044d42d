"""Shared machinery of the losses: picking named model outputs, reducing list-valued ones."""
from __future__ import annotations

from typing import Any, Callable, Literal, Mapping, get_args

import torch
from torch import nn

from reid.registry import ConfigError, suggestion

Reduce = Literal["sum", "mean"]
REDUCTIONS = get_args(Reduce)


class OutputLoss(nn.Module):
    """A loss over one named model output; a list-valued output gives one term per element,
    combined by ``reduce`` ("sum" | "mean")."""

    def __init__(self, input: str, reduce: Reduce = "sum"):  # noqa: A002 - the config key is 'input'
        super().__init__()
        if reduce not in REDUCTIONS:
            raise ConfigError(f"loss reduce must be 'sum' or 'mean', got '{reduce}'{suggestion(reduce, REDUCTIONS)}")
        self.input, self.reduce = input, reduce

    def pick(self, outputs: Mapping[str, Any]) -> list[torch.Tensor]:
        if self.input not in outputs:
            raise KeyError(f"{type(self).__name__}: the model gives no output '{self.input}' "
                           f"(outputs: {', '.join(outputs)}){suggestion(self.input, outputs)}")
        value = outputs[self.input]
        return list(value) if isinstance(value, (list, tuple)) else [value]

    def combine(self, terms: list[torch.Tensor]) -> torch.Tensor:
        total = torch.stack(terms).sum()
        return total / len(terms) if self.reduce == "mean" else total

    def apply_each(self, outputs: Mapping[str, Any], fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return self.combine([fn(x) for x in self.pick(outputs)])


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """x as float32 when it is a half type (autocast outputs); float32 and float64 unchanged (a float64
    run, ``train.dtype: float64``, keeps its precision in the losses)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def pids_of(batch: Mapping[str, Any]) -> torch.Tensor:
    if "pids" not in batch:
        raise KeyError(f"the batch has no 'pids' (keys: {', '.join(batch)})")
    return batch["pids"]

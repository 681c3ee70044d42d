"""LAG-Net's attention feature regularisation (models.md "LAG-Net"; WS-DAN-style feature centres).

f = normalise(sign(x) * sqrt(|x| + 1e-12)) with x the concatenated part vectors (output ``parts``,
[B, M, C] or [B, D]); class centres c [num_classes, D] (zeros, buffers, no gradient)::

    loss = sum_i ||f_i - normalise(c_{y_i})||^2 / B          (centres before this call's update)
    c_y += alpha * (f_i.detach() - normalise(c_y))           (training only, alpha = 0.05)

Several samples of one class in a batch: ``update="mean"`` [choice] moves c_y by alpha times the
mean of their deltas; ``update="last"`` applies the last sample's delta only, which is what the
released code's ``centers[y] += ...`` (index assignment with repeated indices) does in practice.
"""
from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from reid.checks import Count, Prob
from reid.losses.base import full_precision, pids_of
from reid.registry import LOSSES, ConfigError

CentreUpdate = Literal["mean", "last"]
UPDATES = get_args(CentreUpdate)


def signed_sqrt_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """[B, ...] -> [B, D]: flatten, sign(x) * sqrt(|x| + eps), L2-normalise each row."""
    x = full_precision(x).flatten(1)
    return F.normalize(torch.sign(x) * torch.sqrt(x.abs() + eps), dim=1)


@LOSSES.register("attention_reg")
class AttentionRegLoss(nn.Module):
    """Attention feature regularisation on output ``input`` (see the module docstring).

    ``num_classes``: rows of the centre table; 0 takes it from the width of output ``logits`` (its
    first element when a list) on the first call, else from the largest pid (growing as needed).
    """

    def __init__(self, num_classes: Count = 0, alpha: Prob = 0.05, input: str = "parts",  # noqa: A002
                 update: CentreUpdate = "mean", logits: str = "logits"):
        super().__init__()
        if update not in UPDATES:
            raise ConfigError(f"attention_reg update must be one of {UPDATES}, got '{update}'")
        self.num_classes, self.alpha, self.input = int(num_classes), float(alpha), input
        self.update, self.logits = update, logits
        self.register_buffer("centers", torch.zeros(0, 0))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "centers"
        if key in state_dict:  # the table is sized lazily: take the saved shape
            self.centers = torch.zeros_like(state_dict[key], device=self.centers.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _infer_classes(self, outputs: dict, pids: torch.Tensor) -> int:
        n = self.num_classes
        if n <= 0:
            logits = outputs.get(self.logits)
            if isinstance(logits, (list, tuple)):
                logits = logits[0] if logits else None
            n = int(logits.shape[1]) if isinstance(logits, torch.Tensor) else 0
        return max(n, int(pids.max()) + 1)

    def _ensure_centers(self, n: int, dim: int, device: torch.device) -> torch.Tensor:
        c = self.centers
        if c.numel() == 0 or c.shape[1] != dim:
            c = torch.zeros(n, dim, device=device)
        elif c.shape[0] < n:
            c = torch.cat([c, torch.zeros(n - c.shape[0], dim, device=c.device)])
        self.centers = c.to(device)
        return self.centers

    def forward(self, outputs: dict, batch: dict) -> torch.Tensor:
        if self.input not in outputs:
            raise KeyError(f"attention_reg: the model gives no output '{self.input}' (outputs: {', '.join(outputs)})")
        pids = pids_of(batch)
        f = signed_sqrt_normalize(outputs[self.input])
        c = self._ensure_centers(self._infer_classes(outputs, pids), f.shape[1], f.device)
        target = F.normalize(c[pids], dim=1)  # [B, D], no gradient (buffer)
        loss = ((f - target) ** 2).sum(dim=1).mean()
        if self.training:
            with torch.no_grad():
                delta = f.detach() - target
                if self.update == "mean":
                    total = torch.zeros_like(c).index_add_(0, pids, delta)
                    counts = torch.bincount(pids, minlength=c.shape[0]).clamp(min=1).to(c.dtype)
                    c += self.alpha * total / counts[:, None]
                else:
                    last = torch.full((c.shape[0],), -1, dtype=torch.long, device=c.device)
                    last.scatter_reduce_(0, pids, torch.arange(len(pids), device=c.device), "amax")
                    rows = (last >= 0).nonzero().flatten()
                    c[rows] += self.alpha * delta[last[rows]]
        return loss

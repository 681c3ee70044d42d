"""Cross entropy with label smoothing (Szegedy et al., 2016)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reid.checks import Rate
from reid.losses.base import OutputLoss, Reduce, full_precision, pids_of
from reid.registry import LOSSES


def smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """logits [B, N], targets int64 [B]: mean over B of -sum_k q_k log p_k with
    q = (1 - eps) one_hot + eps / N."""
    logp = F.log_softmax(full_precision(logits), dim=1)
    nll = -logp.gather(1, targets[:, None]).squeeze(1)
    return ((1 - epsilon) * nll - epsilon * logp.mean(dim=1)).mean()


@LOSSES.register("cross_entropy")
class CrossEntropyLoss(OutputLoss):
    """Label-smoothed CE on output ``input`` ([B, N] or a list of them), targets ``batch["pids"]``."""

    def __init__(self, epsilon: Rate = 0.1, input: str = "logits", reduce: Reduce = "sum"):  # noqa: A002
        super().__init__(input, reduce)
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = float(epsilon)

    def forward(self, outputs: dict, batch: dict) -> torch.Tensor:
        pids = pids_of(batch)
        return self.apply_each(outputs, lambda x: smoothed_cross_entropy(x, pids, self.epsilon))

"""Centre loss (Wen et al., 2016) with moving-average class centres (no gradient to the centres).

loss = (1/B) sum_i ||f_i - c_{y_i}||^2; after each training call the centres of the classes in the
batch move towards their features: c_y += alpha * mean_{i: y_i = y}(f_i - c_y). With ``normalize``
features and centres are L2-normalised first (LAG-Net's attention-feature regularisation, which also
applies a signed square root: ``signed_sqrt``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reid.losses.base import OutputLoss, pids_of
from reid.registry import LOSSES


@LOSSES.register("center")
class CenterLoss(OutputLoss):
    """Centre loss on output ``input`` ([B, D] or a list); centres [num_classes, D] are buffers
    (``num_classes: 0`` grows them to the largest pid seen)."""

    def __init__(self, num_classes: int = 0, alpha: float = 0.5, input: str = "features",  # noqa: A002
                 reduce: str = "sum", normalize: bool = False, signed_sqrt: bool = False):
        super().__init__(input, reduce)
        self.num_classes, self.alpha = num_classes, float(alpha)
        self.normalize, self.signed_sqrt = normalize, signed_sqrt
        self.centers: list[torch.Tensor] = []  # one [N, D] tensor per list element of the input

    def _centers(self, k: int, x: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        n = max(self.num_classes, int(pids.max()) + 1)
        while len(self.centers) <= k:
            self.centers.append(torch.zeros(0, x.shape[1]))
        c = self.centers[k].to(x.device)
        if c.shape[0] < n:
            c = torch.cat([c, torch.zeros(n - c.shape[0], x.shape[1], device=x.device)])
        self.centers[k] = c
        return c

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.signed_sqrt:
            x = torch.sign(x) * torch.sqrt(x.abs() + 1e-12)
        return F.normalize(x, dim=1) if self.normalize else x

    def forward(self, outputs: dict, batch: dict) -> torch.Tensor:
        pids = pids_of(batch)
        terms = []
        for k, x in enumerate(self.pick(outputs)):
            f = self.transform(x)
            c = self._centers(k, f, pids)
            target = F.normalize(c, dim=1) if self.normalize else c
            terms.append(((f - target[pids]) ** 2).sum(dim=1).mean())
            if self.training:
                with torch.no_grad():
                    delta = torch.zeros_like(c).index_add_(0, pids, f.detach() - target[pids])
                    counts = torch.bincount(pids, minlength=c.shape[0]).clamp(min=1).to(c.dtype)
                    c += self.alpha * delta / counts[:, None]
        return self.combine(terms)

"""Query x gallery distances."""
from __future__ import annotations

import torch

from reid.registry import suggestion

METRICS = ("cosine", "euclidean", "sqeuclidean")


def check_metric(metric: str) -> str:
    """``metric`` if it is one of :data:`METRICS`, else a ValueError naming the closest."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric '{metric}'{suggestion(str(metric), METRICS)}")
    return metric


def compute_distance(qf: torch.Tensor, gf: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Distance matrix [Nq, Ng] between features ``qf`` [Nq, D] and ``gf`` [Ng, D].

    ``cosine``: ``1 - cos(q, g)`` (features are L2-normalised here, so un-normalised input works).
    ``euclidean``: ``||q - g||_2`` (clamped at 0 before the square root); ``sqeuclidean``: its square
    (PCB's release; the same ranking). Computed on the features' device in float32 (float64 input
    stays float64).
    """
    check_metric(metric)
    qf = torch.as_tensor(qf)
    gf = torch.as_tensor(gf).to(qf.device)
    if not qf.is_floating_point() or qf.dtype in (torch.float16, torch.bfloat16):
        qf = qf.float()
    gf = gf.to(qf.dtype)
    if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1]:
        raise ValueError(f"expected features [Nq, D] and [Ng, D], got {tuple(qf.shape)} and {tuple(gf.shape)}")
    if metric == "cosine":
        qn = torch.nn.functional.normalize(qf, dim=1)
        gn = torch.nn.functional.normalize(gf, dim=1)
        return 1.0 - qn @ gn.T
    q2 = (qf * qf).sum(1, keepdim=True)  # euclidean
    g2 = (gf * gf).sum(1)
    d2 = torch.addmm(q2 + g2, qf, gf.T, beta=1.0, alpha=-2.0).clamp_(min=0)
    return d2 if metric == "sqeuclidean" else d2.sqrt_()


class PreparedGallery:
    """Gallery features prepared once (normalised for cosine, squared norms for Euclidean) so
    that query chunks cost one matmul each: ``PreparedGallery(gf, metric)(qf_chunk) -> [B, Ng]``."""

    def __init__(self, gf: torch.Tensor, metric: str = "cosine"):
        self.metric = check_metric(metric)
        gf = torch.as_tensor(gf)
        if not gf.is_floating_point() or gf.dtype in (torch.float16, torch.bfloat16):
            gf = gf.float()
        if metric == "cosine":
            self.g = torch.nn.functional.normalize(gf, dim=1)
        else:
            self.g = gf
            self.g2 = (gf * gf).sum(1)

    def __call__(self, qf: torch.Tensor) -> torch.Tensor:
        qf = torch.as_tensor(qf).to(self.g.device, self.g.dtype)
        if self.metric == "cosine":
            return 1.0 - torch.nn.functional.normalize(qf, dim=1) @ self.g.T
        d2 = torch.addmm((qf * qf).sum(1, keepdim=True) + self.g2, qf, self.g.T, beta=1.0, alpha=-2.0)
        d2 = d2.clamp_(min=0)
        return d2 if self.metric == "sqeuclidean" else d2.sqrt_()

"""Batch-hard triplet loss (Hermans et al., "In Defense of the Triplet Loss", 2017)."""
from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F

from reid.checks import NonNegative
from reid.losses.base import OutputLoss, Reduce, full_precision, pids_of
from reid.registry import LOSSES, ConfigError

TripletMetric = Literal["euclidean", "cosine"]
METRICS = get_args(TripletMetric)


def pairwise_distance(x: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """x [B, D] -> [B, B]: Euclidean distance (sqrt clamped at 1e-12) or cosine distance 1 - cos."""
    x = full_precision(x)
    if metric == "cosine":
        x = F.normalize(x, dim=1)
        return 1.0 - x @ x.t()
    sq = (x * x).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())
    return d2.clamp(min=1e-12).sqrt()


def hardest_pairs(dist: torch.Tensor, pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per anchor: (d(a, hardest positive), d(a, hardest negative), valid) from dist [B, B], pids [B].
    Anchors without a positive (other than themselves) or without a negative are not valid."""
    same = pids[:, None] == pids[None, :]
    eye = torch.eye(len(pids), dtype=torch.bool, device=dist.device)
    pos = same & ~eye
    neg = ~same
    d_ap = dist.masked_fill(~pos, float("-inf")).amax(dim=1)
    d_an = dist.masked_fill(~neg, float("inf")).amin(dim=1)
    valid = pos.any(dim=1) & neg.any(dim=1)
    return d_ap, d_an, valid


def batch_hard_triplet(x: torch.Tensor, pids: torch.Tensor, margin: float = 0.3, soft_margin: bool = False,
                       metric: str = "euclidean") -> torch.Tensor:
    """Mean over valid anchors of max(0, d_ap - d_an + margin), or log(1 + exp(d_ap - d_an)) with
    ``soft_margin``; x [B, D], pids [B]. Zero (with a graph) when no anchor is valid."""
    d_ap, d_an, valid = hardest_pairs(pairwise_distance(x, metric), pids)
    if not valid.any():
        return x.sum() * 0.0
    diff = d_ap[valid] - d_an[valid]
    return F.softplus(diff).mean() if soft_margin else F.relu(diff + margin).mean()


@LOSSES.register("triplet")
class TripletLoss(OutputLoss):
    """Batch-hard triplet loss on output ``input`` ([B, D] or a list of them), labels ``batch["pids"]``.

    ``metric``: euclidean | cosine; ``normalize`` L2-normalises the features first; ``soft_margin``
    replaces the hinge by softplus (``margin`` then unused).
    """

    #: compares images of a batch: the config needs sampler.num_ids >= 2 and num_instances >= 2
    pairwise = True

    def __init__(self, margin: NonNegative = 0.3, soft_margin: bool = False, metric: TripletMetric = "euclidean",
                 input: str = "features", reduce: Reduce = "sum", normalize: bool = False):  # noqa: A002
        super().__init__(input, reduce)
        if metric not in METRICS:
            raise ConfigError(f"triplet metric must be one of {METRICS}, got '{metric}'")
        self.margin, self.soft_margin, self.metric, self.normalize = float(margin), soft_margin, metric, normalize

    def forward(self, outputs: dict, batch: dict) -> torch.Tensor:
        pids = pids_of(batch)

        def term(x: torch.Tensor) -> torch.Tensor:
            if self.normalize:
                x = F.normalize(full_precision(x), dim=1)
            return batch_hard_triplet(x, pids, self.margin, self.soft_margin, self.metric)

        return self.apply_each(outputs, term)

"""Attention-guided and batch-wise feature dropping for LAG-Net and its BDB baseline (models.md).

BA-DropBlock (training only): per sample b, weights w_k = sqrt(sum_{h,w} A_bk + 1e-12) over its
M selected attention maps, L1-normalised; draw one k ~ Multinomial(w); keep mask
m = [A_bk < theta * max_{h,w} A_bk] (theta = 0.5); out_b = F_b * m. Eval: out = F.

BDB, Batch DropBlock (Dai et al., ICCV 2019; training only): one random band of
round(height_ratio * H) rows (and round(width_ratio * W) columns; full width by default) zeroed
at the same place for every sample of the batch; with ``set_shards(N)`` (``train.shards``, the
release's 4-GPU DataParallel run) one band per shard ``x.chunk(N)``, as each replica drew its own
(``models/networks.py:68-71``). Eval: identity.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reid.checks import Fraction, Positive, Prob
from reid.models.layers.common import check_feature_map
from reid.registry import LAYERS


@LAYERS.register("ba_dropblock")
class BADropBlock(nn.Module):
    """forward(F [B, C, H, W], attention [B, M, h, w], generator=None) -> [B, C, H, W].

    Maps of another size are resized bilinearly (align_corners=True) to H x W before masking.
    """

    def __init__(self, channels: int, threshold: Prob = 0.5, eps: Positive = 1e-12):
        super().__init__()
        self.channels, self.threshold, self.eps = channels, threshold, eps

    def sample_maps(self, attention: torch.Tensor, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw one map per sample: (indices [B], maps [B, 1, h, w])."""
        weights = torch.sqrt(attention.detach().sum(dim=(2, 3)) + self.eps)  # [B, M]
        weights = weights / weights.sum(dim=1, keepdim=True)
        if generator is not None and generator.device != weights.device:
            weights = weights.to(generator.device)  # e.g. a CPU generator in tests
        idx = torch.multinomial(weights.float(), 1, generator=generator).to(attention.device)
        h, w = attention.shape[2:]
        return idx[:, 0], attention.gather(1, idx[:, :, None, None].expand(-1, -1, h, w))

    def drop_mask(self, chosen: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Keep mask [B, 1, H, W] (float): 1 where A_k < theta * max(A_k)."""
        chosen = chosen.detach()
        if tuple(chosen.shape[2:]) != tuple(size):
            chosen = F.interpolate(chosen, size=size, mode="bilinear", align_corners=True)
        peak = chosen.amax(dim=(2, 3), keepdim=True)
        return (chosen < self.threshold * peak).to(chosen.dtype)

    def forward(self, x: torch.Tensor, attention: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        check_feature_map(x, self.channels, None, "BA-DropBlock")
        if not self.training:
            return x
        if attention.dim() != 4 or attention.shape[0] != x.shape[0]:
            raise ValueError(f"BA-DropBlock: attention must be [B, M, h, w], got {list(attention.shape)}")
        _, chosen = self.sample_maps(attention, generator)
        return x * self.drop_mask(chosen, tuple(x.shape[2:])).to(x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, threshold={self.threshold}"


@LAYERS.register("bdb")
class BatchDropBlock(nn.Module):
    """BDB, [B, C, H, W] -> [B, C, H, W]; forward(x, generator=None)."""

    def __init__(self, channels: int, height_ratio: Fraction = 1 / 3, width_ratio: Fraction = 1.0):
        super().__init__()
        if not (0.0 < height_ratio <= 1.0 and 0.0 < width_ratio <= 1.0):
            raise ValueError(f"BDB: ratios must be in (0, 1], got {height_ratio}, {width_ratio}")
        self.channels, self.height_ratio, self.width_ratio = channels, height_ratio, width_ratio
        self.shards = 1

    def set_shards(self, shards: int) -> None:
        """One band per shard of the batch (``x.chunk(shards)``, DataParallel's replicas)."""
        self.shards = int(shards)

    def band_mask(self, height: int, width: int, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
        """Keep mask [H, W] (float) with one zeroed round(rh*H) x round(rw*W) block."""
        bh = max(1, round(self.height_ratio * height))
        bw = max(1, round(self.width_ratio * width))
        top = int(torch.randint(0, height - bh + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - bw + 1, (1,), generator=generator))
        mask = torch.ones(height, width)
        mask[top:top + bh, left:left + bw] = 0.0
        return mask

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_feature_map(x, self.channels, None, "BDB")
        if not self.training:
            return x
        pieces = x.chunk(max(1, self.shards), dim=0)
        if len(pieces) == 1:
            return x * self.band_mask(x.shape[2], x.shape[3], generator).to(x)
        return torch.cat([p * self.band_mask(x.shape[2], x.shape[3], generator).to(x) for p in pieces], dim=0)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, height_ratio={self.height_ratio:.4g}, "
            f"width_ratio={self.width_ratio}"
        )

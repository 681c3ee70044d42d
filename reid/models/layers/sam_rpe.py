"""Spatial Attention Module with Relative Position Encoding (SAM-RPE) of LAGA-Net (models.md, eq. 3-7).

Input E [B, C, H, W], N = H*W positions, d_k = C // reduction::

    Q, K = ReLU(BN(Conv1x1(E)))  [B, d_k, H, W];   V = ReLU(BN(Conv1x1(E)))  [B, C, H, W]
    content_i = sum_j softmax_j(q_i . k_j) v_j                       (content term)
    E_o = gamma * (content + BN_H(E_H) + BN_W(E_W)) + E,   gamma initialised to 0.

Position terms (no softmax), learned tables initialised ~ N(0, 1), switch ``position``:

- ``relative`` (default; Shen et al., GSA-Net), tables R_H [(2H-1), d_k], R_W [(2W-1), d_k]::

      E_H[:, x, y] = sum_i <q_xy, R_H[i - x]> v_{i, y}     (along the column)
      E_W[:, x, y] = sum_j <q_xy, R_W[j - y]> v_{x, j}     (along the row)

  (offset r is stored at table row r + H - 1 / r + W - 1). Translation-equivariant.
- ``diagonal`` (the literal eq. 4), L = max(H, W), both tables [(2L-1), d_k]; key position
  j = (h, w) uses row w - h + L - 1::

      P_H = I_H R_H  [N, d_k],   E_H = V (P_H Q)  i.e. E_H[:, i] = sum_j <P_H[j], q_i> v_j

  and likewise E_W with R_W. Works on non-square maps.
- ``none``: no position terms (ablation), E_o = gamma * content + E.
"""
from __future__ import annotations

import torch
from torch import nn

from reid.checks import Dim
from reid.models.layers.common import check_feature_map, conv_bn
from reid.registry import LAYERS

POSITIONS = ("relative", "diagonal", "none")


def relative_index(n: int) -> torch.Tensor:
    """[n, n] long: entry (x, i) = (i - x) + n - 1, the table row of offset i - x."""
    idx = torch.arange(n)
    return idx[None, :] - idx[:, None] + n - 1


def diagonal_index(height: int, width: int) -> torch.Tensor:
    """[H*W] long: position (h, w) (row-major) -> w - h + L - 1, L = max(H, W)."""
    length = max(height, width)
    h = torch.arange(height)[:, None]
    w = torch.arange(width)[None, :]
    return (w - h + length - 1).flatten()


def relative_position_terms(
    q: torch.Tensor, v: torch.Tensor, table_h: torch.Tensor, table_w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``relative`` terms (pre-BN). q [B, d, H, W], v [B, C, H, W], tables [(2H-1), d], [(2W-1), d].

    Returns E_H, E_W, each [B, C, H, W].
    """
    height, width = q.shape[2:]
    rel_h = table_h[relative_index(height).to(q.device)]  # [H(x), H(i), d]
    rel_w = table_w[relative_index(width).to(q.device)]  # [W(y), W(j), d]
    logits_h = torch.einsum("bdxy,xid->bxyi", q, rel_h)  # <q_xy, R_H[i - x]>
    logits_w = torch.einsum("bdxy,yjd->bxyj", q, rel_w)  # <q_xy, R_W[j - y]>
    e_h = torch.einsum("bxyi,bciy->bcxy", logits_h, v)
    e_w = torch.einsum("bxyj,bcxj->bcxy", logits_w, v)
    return e_h, e_w


def diagonal_position_terms(
    q: torch.Tensor, v: torch.Tensor, table_h: torch.Tensor, table_w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``diagonal`` terms (pre-BN). q [B, d, H, W], v [B, C, H, W], tables [(2L-1), d].

    E = V (P Q) is evaluated as (V P) Q: [B, C, N] x [N, d] -> [B, C, d], then x [B, d, N].
    """
    height, width = q.shape[2:]
    idx = diagonal_index(height, width).to(q.device)
    q_flat, v_flat = q.flatten(2), v.flatten(2)
    out = []
    for table in (table_h, table_w):
        pos = table[idx]  # P = I R, [N, d]
        out.append(torch.matmul(torch.matmul(v_flat, pos), q_flat).view_as(v))
    return out[0], out[1]


@LAYERS.register("sam_rpe")
class SAMRPE(nn.Module):
    """SAM-RPE, [B, C, H, W] -> [B, C, H, W] for the fixed map size ``height`` x ``width``."""

    def __init__(
        self, channels: int, height: int, width: int, position: str = "relative", reduction: Dim = 8
    ):
        super().__init__()
        if position not in POSITIONS:
            raise ValueError(f"SAM-RPE position must be one of {POSITIONS}, got '{position}'")
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f"SAM-RPE: reduction {reduction} invalid for {channels} channels")
        if height < 1 or width < 1:
            raise ValueError(f"SAM-RPE: invalid map size {height}x{width}")
        self.channels, self.height, self.width = channels, height, width
        self.position = position
        self.key_dim = channels // reduction
        self.query = conv_bn(channels, self.key_dim)
        self.key = conv_bn(channels, self.key_dim)
        self.value = conv_bn(channels, channels)
        if position != "none":
            if position == "relative":
                rows_h, rows_w = 2 * height - 1, 2 * width - 1
            else:
                rows_h = rows_w = 2 * max(height, width) - 1
            self.rel_h = nn.Parameter(torch.randn(rows_h, self.key_dim))
            self.rel_w = nn.Parameter(torch.randn(rows_w, self.key_dim))
            self.bn_h = nn.BatchNorm2d(channels)
            self.bn_w = nn.BatchNorm2d(channels)
        self.gamma = nn.Parameter(torch.zeros(1))

    def projections(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q [B, d_k, H, W], K [B, d_k, H, W], V [B, C, H, W]."""
        return self.query(x), self.key(x), self.value(x)

    @staticmethod
    def content_term(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """content_i = sum_j softmax_j(q_i . k_j) v_j, [B, C, H, W]."""
        q_flat, k_flat, v_flat = q.flatten(2), k.flatten(2), v.flatten(2)
        attn = torch.softmax(torch.bmm(q_flat.transpose(1, 2), k_flat), dim=-1)  # [B, N(i), N(j)]
        return torch.bmm(v_flat, attn.transpose(1, 2)).view_as(v)

    def position_terms(self, q: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E_H, E_W) before their BatchNorms, each [B, C, H, W]."""
        if self.position == "relative":
            return relative_position_terms(q, v, self.rel_h, self.rel_w)
        if self.position == "diagonal":
            return diagonal_position_terms(q, v, self.rel_h, self.rel_w)
        raise RuntimeError("SAM-RPE with position='none' has no position terms")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels, (self.height, self.width), "SAM-RPE")
        q, k, v = self.projections(x)
        out = self.content_term(q, k, v)
        if self.position != "none":
            e_h, e_w = self.position_terms(q, v)
            out = out + self.bn_h(e_h) + self.bn_w(e_w)
        return self.gamma * out + x

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, size={self.height}x{self.width}, "
            f"position={self.position}, key_dim={self.key_dim}"
        )

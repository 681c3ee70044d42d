"""Relation-aware global attention (RGA-S, RGA-C, RGA-SC) of RGA-Net (Zhang et al., CVPR 2020; models.md).

All convolutions are 1x1, bias False, followed by BN + ReLU unless noted. Input x [B, C, H, W],
N = H*W, c' = C // channel_ratio, n' = N // spatial_ratio.

RGA-S (one weight per position)::

    theta, phi = CBR(C -> c')(x)  [B, c', N];    G = theta^T phi  [B, N, N]
    r_i  = [G[i, :], G[:, i]]     (2N)  -> CBR(2N -> n')          relation feature per position
    gx_i = mean_channels(CBR(C -> c')(x))_i                       embedded own feature (1)
    a_i  = sigmoid(W_s([gx_i, r_i])),  W_s = CBR(1 + n' -> (1 + n')//d) -> Conv + BN(-> 1)
    out  = a * x                  (broadcast over channels; no gamma)

RGA-C is the same on x viewed as N "channels" over C "positions": theta, phi, gx: N -> n',
G [B, C, C], relation CBR(2C -> c'), W_c on 1 + c', one weight per channel. RGA-SC = S then C.
"""
from __future__ import annotations

import torch
from torch import nn

from reid.checks import Dim
from reid.models.layers.common import check_feature_map, conv_bn
from reid.registry import LAYERS


def gate_mlp(in_ch: int, down_ratio: int) -> nn.Sequential:
    """W: Conv(in -> in//d) + BN + ReLU -> Conv(-> 1) + BN (no ReLU); logits of the sigmoid gate."""
    mid = max(1, in_ch // down_ratio)
    return nn.Sequential(conv_bn(in_ch, mid), conv_bn(mid, 1, relu=False))


class _RelationGate(nn.Module):
    """Relation-aware gate over ``positions`` items with ``features`` features each.

    Input [B, features, positions, 1]; returns the gate logits [B, 1, positions, 1].
    """

    def __init__(self, features: int, positions: int, feature_ratio: int, position_ratio: int,
                 down_ratio: int):
        super().__init__()
        inter_f = max(1, features // feature_ratio)
        inter_p = max(1, positions // position_ratio)
        self.theta = conv_bn(features, inter_f)
        self.phi = conv_bn(features, inter_f)
        self.gx = conv_bn(features, inter_f)
        self.relation = conv_bn(2 * positions, inter_p)
        self.gate = gate_mlp(1 + inter_p, down_ratio)

    def affinity(self, z: torch.Tensor) -> torch.Tensor:
        """G [B, P, P], G[i, j] = theta_i . phi_j."""
        return torch.bmm(self.theta(z).flatten(2).transpose(1, 2), self.phi(z).flatten(2))

    def relation_features(self, z: torch.Tensor) -> torch.Tensor:
        """CBR(2P -> p') of r_i = [G[i, :], G[:, i]] at every position i: [B, p', P, 1].

        The 1x1 convolution over the [B, 2P, P] concatenation is computed as
        ``W_row G^T + W_col G`` (W = [W_row | W_col]), the same sum without materialising the
        concatenation (2 B P^2 values, 2 GiB per RGA-S after layer1 at 64 x 256x128) or its gradient.
        """
        g = self.affinity(z)
        conv, rest = self.relation[0], self.relation[1:]
        w = conv.weight.flatten(1)  # [p', 2P]
        p = g.shape[1]
        out = torch.matmul(w[:, :p], g.transpose(1, 2)) + torch.matmul(w[:, p:], g)
        return rest(out.unsqueeze(-1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        rel = self.relation_features(z)  # [B, p', P, 1]
        own = self.gx(z).mean(dim=1, keepdim=True)  # [B, 1, P, 1]
        return self.gate(torch.cat((own, rel), dim=1))


@LAYERS.register("rga")
class RGA(nn.Module):
    """RGA-S / RGA-C / RGA-SC, [B, C, H, W] -> [B, C, H, W] for fixed ``height`` x ``width``.

    ``use_spatial`` and ``use_channel`` select S, C or SC (spatial first); ``channel_ratio`` and
    ``spatial_ratio`` are the embedding reductions (s), ``down_ratio`` the W reduction (d).
    """

    def __init__(self, channels: int, height: int, width: int, use_spatial: bool = True,
                 use_channel: bool = True, channel_ratio: Dim = 8, spatial_ratio: Dim = 8,
                 down_ratio: Dim = 8):
        super().__init__()
        if not (use_spatial or use_channel):
            raise ValueError("RGA: at least one of use_spatial, use_channel must be true")
        self.channels, self.height, self.width = channels, height, width
        self.use_spatial, self.use_channel = use_spatial, use_channel
        n = height * width
        # spatial: C features at each of N positions; channel: N features at each of C positions
        self.spatial = (_RelationGate(channels, n, channel_ratio, spatial_ratio, down_ratio)
                        if use_spatial else None)
        self.channel = (_RelationGate(n, channels, spatial_ratio, channel_ratio, down_ratio)
                        if use_channel else None)

    def spatial_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Sigmoid weight per position, [B, 1, H, W]."""
        z = x.flatten(2).unsqueeze(-1)  # [B, C, N, 1]
        return torch.sigmoid(self.spatial(z)).view(x.shape[0], 1, self.height, self.width)

    def channel_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Sigmoid weight per channel, [B, C, 1, 1]."""
        z = x.flatten(2).transpose(1, 2).unsqueeze(-1)  # [B, N, C, 1]
        return torch.sigmoid(self.channel(z)).view(x.shape[0], self.channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels, (self.height, self.width), "RGA")
        if self.spatial is not None:
            x = self.spatial_attention(x) * x
        if self.channel is not None:
            x = self.channel_attention(x) * x
        return x

    def extra_repr(self) -> str:
        kind = "S" * self.use_spatial + "C" * self.use_channel
        return f"RGA-{kind}, channels={self.channels}, size={self.height}x{self.width}"

"""Channel Attention Module (CAM) of LAGA-Net (models.md, eq. 1-2; the DANet channel attention).

For E [B, C, H, W] viewed as X [B, C, N] with N = H*W::

    energy = X X^T                      [B, C, C]
    A      = softmax_row(energy)        ("softmax", the paper)
           | softmax_row(rowmax(energy) - energy)   ("rowmax_minus", the DANet/MBA code trick)
    out    = A X                        [B, C, N]
    E_o    = gamma * out + E,           gamma a scalar initialised to 0 (identity at init).
"""
from __future__ import annotations

import torch
from torch import nn

from reid.models.layers.common import check_feature_map
from reid.registry import LAYERS

CAM_VARIANTS = ("softmax", "rowmax_minus")


@LAYERS.register("cam")
class CAM(nn.Module):
    """Channel attention, [B, C, H, W] -> [B, C, H, W]; ``variant``: "softmax" | "rowmax_minus"."""

    def __init__(self, channels: int, variant: str = "softmax"):
        super().__init__()
        if variant not in CAM_VARIANTS:
            raise ValueError(f"CAM variant must be one of {CAM_VARIANTS}, got '{variant}'")
        self.channels = channels
        self.variant = variant
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The channel affinity A [B, C, C] (rows sum to 1), computed in float32 (autocast off:
        the energies sum N squared activations and overflow float16)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            flat = x.flatten(2)  # [B, C, N]
            if flat.dtype in (torch.float16, torch.bfloat16):
                flat = flat.float()
            energy = torch.bmm(flat, flat.transpose(1, 2))  # [B, C, C]
            if self.variant == "rowmax_minus":
                energy = energy.amax(dim=-1, keepdim=True) - energy
            return torch.softmax(energy, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels, None, "CAM")
        attn = self.attention(x).to(x.dtype)
        out = torch.bmm(attn, x.flatten(2)).view_as(x)
        return self.gamma * out + x

    def extra_repr(self) -> str:
        return f"channels={self.channels}, variant={self.variant}"

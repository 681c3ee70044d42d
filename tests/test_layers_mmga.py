"""MMGA mask-guided attention: shapes, sigmoid range, and O_m = T * pool(S_m) * SE(T)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reid.models.layers import MaskGuidedAttention
from reid.registry import LAYERS


def test_mmga_self_attention_shapes():
    m = LAYERS.build("mmga", 32)
    x = torch.randn(2, 32, 12, 4)
    out = m(x)
    assert len(out.features) == 1 and out.features[0].shape == x.shape
    assert out.maps.shape == (2, 1, 12, 4) and out.channel.shape == (2, 32)
    assert ((out.maps > 0) & (out.maps < 1)).all()
    torch.testing.assert_close(out.features[0], x * out.maps * out.channel[:, :, None, None])


def test_mmga_cross_stage_three_maps():
    """layer2-like source (2x the size) guiding a deeper, wider target with 3 maps."""
    m = MaskGuidedAttention(16, target_channels=32, num_maps=3).eval()
    x, t = torch.randn(2, 16, 12, 8), torch.randn(2, 32, 6, 4)
    out = m(x, t)
    assert out.maps.shape == (2, 3, 12, 8) and len(out.features) == 3
    pooled = F.avg_pool2d(out.maps, 2)
    se = torch.sigmoid(m.se.fc(t.mean(dim=(2, 3))))
    for k in range(3):
        torch.testing.assert_close(out.features[k], t * pooled[:, k:k + 1] * se[:, :, None, None])
    ((out.maps - 0.5) ** 2).mean().backward()  # a mask loss on the maps reaches the spatial convs
    assert m.spatial[0][0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="MMGA target"):
        m(x, torch.randn(2, 16, 6, 4))

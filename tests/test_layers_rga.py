"""RGA-S / RGA-C / RGA-SC against a direct slow implementation (loops over positions), sizes, counts."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from reid.models.layers import RGA
from reid.registry import LAYERS


def randomise_bn(module: nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def cbr(seq: nn.Sequential, vec: torch.Tensor) -> torch.Tensor:
    """Conv1x1 (bias False) + eval BN (+ ReLU if present) applied to one feature vector."""
    conv, bn = seq[0], seq[1]
    y = conv.weight[:, :, 0, 0] @ vec
    y = (y - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    return torch.relu(y) if len(seq) > 2 else y


def slow_gate(gate, feats: list[torch.Tensor]) -> torch.Tensor:
    """Sigmoid weights, one per item; ``feats[i]`` is item i's feature vector."""
    p = len(feats)
    theta = [cbr(gate.theta, f) for f in feats]
    phi = [cbr(gate.phi, f) for f in feats]
    G = torch.zeros(p, p, dtype=feats[0].dtype)
    for i in range(p):
        for j in range(p):
            G[i, j] = torch.dot(theta[i], phi[j])
    out = []
    for i in range(p):
        relation = cbr(gate.relation, torch.cat([G[i, :], G[:, i]]))  # row of G, row of G^T
        own = cbr(gate.gx, feats[i]).mean().reshape(1)
        hidden = cbr(gate.gate[0], torch.cat([own, relation]))
        out.append(torch.sigmoid(cbr(gate.gate[1], hidden)[0]))
    return torch.stack(out)


def slow_rga(m: RGA, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    out = x.clone()
    for n in range(b):
        y = out[n].reshape(c, h * w)
        if m.use_spatial:
            a = slow_gate(m.spatial, [y[:, i] for i in range(h * w)])
            y = y * a[None, :]
        if m.use_channel:
            a = slow_gate(m.channel, [y[k, :] for k in range(c)])
            y = y * a[:, None]
        out[n] = y.reshape(c, h, w)
    return out


@pytest.mark.parametrize("spatial,channel", [(True, True), (True, False), (False, True)])
def test_rga_matches_slow(spatial, channel):
    torch.manual_seed(0)
    m = RGA(72, 9, 8, use_spatial=spatial, use_channel=channel).double().eval()
    randomise_bn(m)
    x = torch.randn(2, 72, 9, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), slow_rga(m, x))


def test_rga_attention_shapes_and_range():
    m = LAYERS.build("rga", 32, 6, 4).eval()
    x = torch.randn(2, 32, 6, 4)
    s, c = m.spatial_attention(x), m.channel_attention(x)
    assert s.shape == (2, 1, 6, 4) and c.shape == (2, 32, 1, 1)
    assert ((s > 0) & (s < 1)).all() and ((c > 0) & (c < 1)).all()
    assert m.spatial.gate[0][0].in_channels == 1 + 24 // 8


def test_rga_wrong_size_is_clear_error():
    m = RGA(32, 6, 4)
    with pytest.raises(ValueError, match="built for 6x4"):
        m(torch.randn(2, 32, 8, 4))
    with pytest.raises(ValueError, match="expected input"):
        m(torch.randn(2, 16, 6, 4))
    with pytest.raises(ValueError):
        RGA(32, 6, 4, use_spatial=False, use_channel=False)


def test_rga_gradients():
    m = RGA(32, 6, 4).train()
    x = torch.randn(3, 32, 6, 4, requires_grad=True)
    m(x).sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.parametrize(
    "channels,height,width,millions",
    [(256, 96, 32, 5.96), (512, 48, 16, 0.54), (1024, 24, 8, 0.68), (2048, 24, 8, 2.66)],
)
def test_rga_sc_parameter_counts_at_384x128(channels, height, width, millions):
    """ResNet-50 at 384x128, last stride 1: RGA-SC after layer1..layer4 (paper's code sizes)."""
    with torch.device("meta"):
        m = RGA(channels, height, width)
    count = sum(p.numel() for p in m.parameters())
    assert round(count / 1e6, 2) == millions

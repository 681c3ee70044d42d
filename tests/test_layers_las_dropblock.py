"""LAS, BA-DropBlock and BDB against direct slow implementations of models.md (LAG-Net)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reid.models.layers import LAS, BADropBlock, BatchDropBlock
from reid.registry import LAYERS


def eval_las(channels: int, num_parts: int, pooling: str) -> LAS:
    torch.manual_seed(0)
    las = LAS(channels, num_parts=num_parts, pooling=pooling).double().eval()
    bn = las.attention[1]
    bn.running_mean.uniform_(-0.1, 0.1)
    bn.running_var.uniform_(0.5, 1.5)
    bn.bias.data.fill_(0.5)  # mostly positive maps: no ties among spatial sums
    return las


def slow_las(las: LAS, x: torch.Tensor):
    b, c, h, w = x.shape
    with torch.no_grad():
        a = las.attention_maps(x)
    parts = torch.zeros(b, las.num_parts, c, dtype=x.dtype)
    chosen = []
    for n in range(b):
        sums = [sum(float(a[n, k, i, j]) for i in range(h) for j in range(w)) for k in range(c)]
        order = sorted(range(c), key=lambda k: -sums[k])[: las.num_parts]
        chosen.append(order)
        for m, k in enumerate(order):
            for ch in range(c):
                vals = [
                    float(x[n, ch, i, j] + a[n, k, i, j]) if las.pooling == "add"
                    else float(x[n, ch, i, j] * a[n, k, i, j])
                    for i in range(h) for j in range(w)
                ]
                parts[n, m, ch] = sum(vals) / len(vals) + max(vals)
    g = torch.stack([parts[n].max(0).values + parts[n].mean(0) for n in range(b)])
    return parts, torch.tensor(chosen), g


@pytest.mark.parametrize("pooling", ["add", "mul"])
def test_las_matches_slow(pooling):
    las = eval_las(12, 5, pooling)
    x = torch.randn(2, 12, 4, 3, dtype=torch.float64)
    with torch.no_grad():
        out = las(x)
    parts, chosen, g = slow_las(las, x)
    assert torch.equal(out.indices, chosen)
    torch.testing.assert_close(out.parts, parts)
    torch.testing.assert_close(out.global_feature, g)
    assert out.attention.shape == (2, 5, 4, 3)
    full = las.attention_maps(x)
    for n in range(2):
        torch.testing.assert_close(out.attention[n], full[n, chosen[n]])


def test_las_defaults_and_gradients():
    las = LAYERS.build("las", 32)
    assert las.num_parts == 24 and las.pooling == "add" and las.attention[1].eps == 1e-3
    assert las.attention[0].bias is None
    x = torch.randn(2, 32, 6, 4, requires_grad=True)
    out = las(x)
    assert out.parts.shape == (2, 24, 32) and out.global_feature.shape == (2, 32)
    out.global_feature.sum().backward()
    assert x.grad.abs().sum() > 0 and las.attention[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        LAS(32, pooling="max")
    with pytest.raises(ValueError):
        LAS(8, num_parts=9)


def slow_ba_weights(attention: torch.Tensor) -> torch.Tensor:
    b, m, h, w = attention.shape
    out = torch.zeros(b, m, dtype=attention.dtype)
    for n in range(b):
        raw = [math.sqrt(sum(float(attention[n, k, i, j]) for i in range(h) for j in range(w)) + 1e-12)
               for k in range(m)]
        total = sum(raw)
        for k in range(m):
            out[n, k] = raw[k] / total
    return out


def slow_ba_dropblock(x, attention, indices):
    out = x.clone()
    b, _, h, w = x.shape
    for n in range(b):
        a = attention[n, int(indices[n])]
        peak = max(float(a[i, j]) for i in range(h) for j in range(w))
        for i in range(h):
            for j in range(w):
                if not float(a[i, j]) < 0.5 * peak:
                    out[n, :, i, j] = 0.0
    return out


def test_ba_dropblock_matches_slow():
    torch.manual_seed(1)
    x = torch.randn(4, 8, 6, 4, dtype=torch.float64)
    attention = torch.relu(torch.randn(4, 5, 6, 4, dtype=torch.float64))
    drop = LAYERS.build("ba_dropblock", 8).train()
    out = drop(x, attention, generator=torch.Generator().manual_seed(7))
    weights = slow_ba_weights(attention)
    indices = torch.multinomial(weights.float(), 1, generator=torch.Generator().manual_seed(7))[:, 0]
    torch.testing.assert_close(out, slow_ba_dropblock(x, attention, indices))
    assert (out == 0).any() and (out != 0).any()


def test_ba_dropblock_sampling_follows_weights():
    attention = torch.zeros(1, 3, 2, 2)
    attention[0, 0] = 1.0  # sum 4 -> sqrt 2
    attention[0, 2] = 4.0  # sum 16 -> sqrt 4; map 1 sums to 0 -> sqrt(1e-12)
    drop = BADropBlock(1)
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(600):
        k, _ = drop.sample_maps(attention, gen)
        counts[k] += 1
    freq = counts / counts.sum()
    assert counts[1] == 0
    assert abs(freq[0] - 1 / 3) < 0.07 and abs(freq[2] - 2 / 3) < 0.07


def test_ba_dropblock_eval_identity_and_resize():
    x = torch.randn(2, 8, 6, 4)
    attention = torch.rand(2, 5, 6, 4)
    drop = BADropBlock(8).eval()
    assert drop(x, attention) is x
    drop.train()
    out = drop(x, torch.rand(2, 5, 3, 2))  # maps at another size are resized
    assert out.shape == x.shape


def slow_band_check(out: torch.Tensor, x: torch.Tensor, band_rows: int) -> None:
    b, c, h, w = x.shape
    zero_rows = [i for i in range(h) if all(float(out[n, ch, i, j]) == 0.0
                                            for n in range(b) for ch in range(c) for j in range(w))]
    assert len(zero_rows) == band_rows
    assert zero_rows == list(range(zero_rows[0], zero_rows[0] + band_rows))  # one contiguous band
    for i in range(h):
        if i not in zero_rows:
            assert torch.equal(out[:, :, i], x[:, :, i])


def test_bdb_band_whole_batch():
    x = torch.randn(5, 4, 24, 8) + 10.0  # no accidental zeros
    bdb = LAYERS.build("bdb", 4).train()
    tops = set()
    for seed in range(30):
        out = bdb(x, generator=torch.Generator().manual_seed(seed))
        slow_band_check(out, x, 8)
        tops.add(int((out[0, 0, :, 0] == 0).nonzero()[0]))
    assert len(tops) > 3 and min(tops) >= 0 and max(tops) <= 16
    bdb.eval()
    assert bdb(x) is x


def test_bdb_ratio_options():
    bdb = BatchDropBlock(2, height_ratio=0.25, width_ratio=0.5).train()
    mask = bdb.band_mask(8, 4, torch.Generator().manual_seed(0))
    assert int((mask == 0).sum()) == 2 * 2
    with pytest.raises(ValueError):
        BatchDropBlock(2, height_ratio=0.0)


def test_layers_are_modules():
    assert all(isinstance(LAYERS.build(n, 32), nn.Module) for n in ("las", "ba_dropblock", "bdb"))

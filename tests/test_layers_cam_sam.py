"""CAM and SAM-RPE against direct slow implementations of models.md eq. 1-7 (loops over positions)."""
from __future__ import annotations

import pytest
import torch

from reid.models.layers import CAM, SAMRPE
from reid.registry import LAYERS

torch.manual_seed(0)


# ----------------------------------------------------------------------------- slow references
def slow_cam(x: torch.Tensor, gamma: float, variant: str) -> torch.Tensor:
    b, c, h, w = x.shape
    out = torch.empty_like(x)
    for n in range(b):
        X = x[n].reshape(c, h * w)
        for i in range(c):
            energy = torch.stack([sum(X[i, p] * X[j, p] for p in range(h * w)) for j in range(c)])
            if variant == "rowmax_minus":
                energy = energy.max() - energy
            a = torch.exp(energy - energy.max())
            a = a / a.sum()
            out[n, i] = sum(a[j] * x[n, j] for j in range(c))
    return gamma * out + x


def slow_content(q, k, v):
    b, _, h, w = q.shape
    out = torch.zeros_like(v)
    pos = [(r, s) for r in range(h) for s in range(w)]
    for n in range(b):
        for x, y in pos:
            logits = torch.stack([torch.dot(q[n, :, x, y], k[n, :, r, s]) for r, s in pos])
            a = torch.softmax(logits, 0)
            for t, (r, s) in enumerate(pos):
                out[n, :, x, y] += a[t] * v[n, :, r, s]
    return out


def slow_relative(q, v, table_h, table_w):
    b, _, h, w = q.shape
    e_h, e_w = torch.zeros_like(v), torch.zeros_like(v)
    for n in range(b):
        for x in range(h):
            for y in range(w):
                for i in range(h):  # R_H[i - x], offset stored at row (i - x) + H - 1
                    e_h[n, :, x, y] += torch.dot(q[n, :, x, y], table_h[i - x + h - 1]) * v[n, :, i, y]
                for j in range(w):
                    e_w[n, :, x, y] += torch.dot(q[n, :, x, y], table_w[j - y + w - 1]) * v[n, :, x, j]
    return e_h, e_w


def slow_diagonal(q, v, table_h, table_w):
    b, _, h, w = q.shape
    L = max(h, w)
    e_h, e_w = torch.zeros_like(v), torch.zeros_like(v)
    for n in range(b):
        for qx in range(h):
            for qy in range(w):
                for kh in range(h):
                    for kw in range(w):
                        row = kw - kh + L - 1
                        e_h[n, :, qx, qy] += torch.dot(table_h[row], q[n, :, qx, qy]) * v[n, :, kh, kw]
                        e_w[n, :, qx, qy] += torch.dot(table_w[row], q[n, :, qx, qy]) * v[n, :, kh, kw]
    return e_h, e_w


def randomise_bn(module: torch.nn.Module) -> None:
    """Non-trivial eval-mode BN statistics so that a missing/misplaced BN would be caught."""
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


# ----------------------------------------------------------------------------- CAM
@pytest.mark.parametrize("variant", ["softmax", "rowmax_minus"])
def test_cam_matches_slow(variant):
    x = torch.randn(2, 5, 3, 2, dtype=torch.float64) * 0.5
    cam = CAM(5, variant=variant).double()
    cam.gamma.data.fill_(0.7)
    torch.testing.assert_close(cam(x), slow_cam(x, 0.7, variant))


def test_cam_identity_at_init_and_grad():
    cam = LAYERS.build("cam", 8)
    assert cam.gamma.item() == 0.0
    x = torch.randn(2, 8, 4, 3)
    assert torch.equal(cam(x), x)
    cam(x).pow(2).sum().backward()
    assert cam.gamma.grad is not None and cam.gamma.grad.abs() > 0
    with pytest.raises(ValueError):
        CAM(8, variant="max")
    with pytest.raises(ValueError, match="CAM"):
        cam(torch.randn(2, 7, 4, 3))


# ----------------------------------------------------------------------------- SAM-RPE
@pytest.mark.parametrize("position", ["relative", "diagonal", "none"])
@pytest.mark.parametrize("size", [(4, 3), (3, 3), (2, 5)])
def test_sam_rpe_matches_slow(position, size):
    h, w = size
    sam = SAMRPE(16, h, w, position=position).double().eval()
    randomise_bn(sam)
    sam.gamma.data.fill_(0.6)
    x = torch.randn(2, 16, h, w, dtype=torch.float64)
    with torch.no_grad():
        q, k, v = sam.projections(x)
        assert q.shape == (2, 2, h, w) and v.shape == (2, 16, h, w)
        body = slow_content(q, k, v)
        if position != "none":
            slow = slow_relative if position == "relative" else slow_diagonal
            e_h, e_w = slow(q, v, sam.rel_h, sam.rel_w)
            torch.testing.assert_close(sam.position_terms(q, v), (e_h, e_w))
            body = body + sam.bn_h(e_h) + sam.bn_w(e_w)
        torch.testing.assert_close(sam(x), 0.6 * body + x)


def test_sam_rpe_table_shapes():
    assert SAMRPE(64, 24, 8).rel_h.shape == (47, 8)
    assert SAMRPE(64, 24, 8).rel_w.shape == (15, 8)
    diag = SAMRPE(64, 24, 8, position="diagonal")
    assert diag.rel_h.shape == diag.rel_w.shape == (47, 8)
    assert not hasattr(SAMRPE(64, 24, 8, position="none"), "rel_h")


@pytest.mark.parametrize("size", [(24, 8), (21, 21)])
@pytest.mark.parametrize("position", ["relative", "diagonal"])
def test_sam_rpe_real_map_sizes_identity_at_init(size, position):
    sam = SAMRPE(32, *size, position=position)
    x = torch.randn(2, 32, *size)
    assert sam.gamma.item() == 0.0
    assert torch.equal(sam(x), x)


def test_sam_rpe_wrong_size_is_clear_error():
    sam = SAMRPE(16, 6, 4)
    with pytest.raises(ValueError, match="built for 6x4"):
        sam(torch.randn(1, 16, 4, 6))
    with pytest.raises(ValueError, match="expected input"):
        sam(torch.randn(1, 8, 6, 4))
    with pytest.raises(ValueError):
        SAMRPE(16, 6, 4, position="absolute")


def test_relative_term_translation_equivariant():
    """Shifting (q, v) by (s, t) shifts E_H, E_W when v's support stays inside the map."""
    h, w, s, t = 7, 6, 2, 1
    sam = SAMRPE(8, h, w).double()
    q = torch.randn(2, 1, h, w, dtype=torch.float64)
    v = torch.zeros(2, 8, h, w, dtype=torch.float64)
    v[:, :, : h - s, : w - t] = torch.randn(2, 8, h - s, w - t, dtype=torch.float64)
    # circular shift of q and v; v's zero border means nothing wraps around
    q_s, v_s = q.roll((s, t), (2, 3)), v.roll((s, t), (2, 3))
    e_h, e_w = sam.position_terms(q, v)
    e_h_s, e_w_s = sam.position_terms(q_s, v_s)
    torch.testing.assert_close(e_h_s[:, :, s:, t:], e_h[:, :, : h - s, : w - t])
    torch.testing.assert_close(e_w_s[:, :, s:, t:], e_w[:, :, : h - s, : w - t])


def test_relative_module_translation_equivariant():
    """Whole-input circular shifts: the 1x1 projections commute with shifts, so E_H (column
    attention) follows a W-shift and E_W (row attention) an H-shift exactly."""
    sam = SAMRPE(8, 5, 6).double().eval()
    randomise_bn(sam)
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        q, _, v = sam.projections(x)
        e_h, e_w = sam.position_terms(q, v)
        q2, _, v2 = sam.projections(x.roll(2, 3))
        torch.testing.assert_close(sam.position_terms(q2, v2)[0], e_h.roll(2, 3))
        q3, _, v3 = sam.projections(x.roll(1, 2))
        torch.testing.assert_close(sam.position_terms(q3, v3)[1], e_w.roll(1, 2))


@pytest.mark.parametrize("position", ["relative", "diagonal"])
def test_sam_rpe_gradients_reach_gamma_and_tables(position):
    sam = LAYERS.build("sam_rpe", 16, 4, 3, position=position)
    x = torch.randn(3, 16, 4, 3)
    y = sam(x)
    assert torch.equal(y, x)
    y.pow(2).sum().backward()
    assert sam.gamma.grad.abs() > 0
    # with gamma = 0 the tables get no gradient yet; after one step on gamma they do
    sam.zero_grad()
    sam.gamma.data.fill_(0.5)
    sam(x).pow(2).sum().backward()
    for p in (sam.gamma, sam.rel_h, sam.rel_w):
        assert p.grad is not None and p.grad.abs().sum() > 0

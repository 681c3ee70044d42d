"""Attention maps of tools/visualize.py: each map the tool reports equals the layer's own attention,
computed here directly from the layer's submodules on the feature map entering it (tiny ResNet-18
networks, random init, 64x32 input)."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from reid.models import build_model
from reid.visualize.attention import collect_maps, grad_cam, query_index

R18 = {"name": "resnet18", "last_stride": 1, "pretrained": False}
SIZE = (64, 32)


@functools.cache
def tiny(name: str, num_parts: int = 24):
    """A random-init network (built once per module: building is most of each test's time)."""
    torch.manual_seed(0)
    extra = {"num_parts": num_parts} if name == "lagnet" else {}
    return build_model({"name": name, "backbone": R18, **extra}, 5, input_size=SIZE).eval()


def images(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, *SIZE, generator=torch.Generator().manual_seed(1))


def column(found, start: str):
    hits = [c for c in found.columns if c.label.startswith(start)]
    assert hits, f"no column '{start}' in {[c.label for c in found.columns]}"
    return hits


def test_query_index_maps_fractions_to_row_major_cells():
    assert query_index((0.0, 0.0), 4, 2) == 0
    assert query_index((0.5, 0.99), 4, 2) == 2 * 2 + 1
    assert query_index((1.0, 1.0), 4, 2) == 7  # the far edge stays inside


@torch.no_grad()
def test_sam_rpe_maps_are_the_softmax_of_query_key_products():
    model, x = tiny("laganet"), images()
    q_pos = [(0.2, 0.5), (0.8, 0.1)]
    found = collect_maps(model, x, q_pos)
    branch = model.branches[0]
    assert branch.spec.name == "spatial"
    before_in = model.trunk(x)
    after_in = branch.stages(branch.before(before_in))
    for place, e, sam in (("before", before_in, branch.before[0]), ("after", after_in, branch.after[0])):
        q, k = sam.query(e).flatten(2), sam.key(e).flatten(2)
        h, w = e.shape[2:]
        n = h * w
        logits = torch.zeros(len(x), n, n)
        for b in range(len(x)):
            for i in range(n):
                for j in range(n):
                    logits[b, i, j] = (q[b, :, i] * k[b, :, j]).sum()
        attn = torch.softmax(logits, dim=-1)  # [B, N(query), N(key)]
        cols = column(found, f"SAM-RPE spatial {place}")
        assert len(cols) == len(q_pos) + 1
        for (r, c), col in zip(q_pos, cols):
            i = min(h - 1, int(r * h)) * w + min(w - 1, int(c * w))
            torch.testing.assert_close(col.maps, attn[:, i].reshape(-1, h, w), rtol=1e-4, atol=1e-6)
            assert col.point == (r, c)
        torch.testing.assert_close(cols[-1].maps, attn.mean(dim=1).reshape(-1, h, w), rtol=1e-4, atol=1e-6)
    assert any("CAM" in n for n in found.notes)  # channel attention has no spatial map: said so


@torch.no_grad()
def test_rga_s_maps_are_the_gate_over_relation_features():
    model, x = tiny("rganet"), images()
    found = collect_maps(model, x)
    e = model.backbone.stage("layer1")(model.backbone.stage("stem")(x))
    gate = model.rga["layer1"].spatial
    z = e.flatten(2).unsqueeze(-1)  # [B, C, N, 1]
    g = torch.bmm(gate.theta(z).flatten(2).transpose(1, 2), gate.phi(z).flatten(2))  # [B, N, N]
    relation = gate.relation(torch.cat([g.transpose(1, 2), g], dim=1).unsqueeze(-1))  # r_i = [G[i,:], G[:,i]]
    own = gate.gx(z).mean(dim=1, keepdim=True)
    expected = torch.sigmoid(gate.gate(torch.cat([own, relation], dim=1))).view(len(x), *e.shape[2:])
    cols = column(found, "RGA-S")
    assert [c.label for c in cols] == [f"RGA-S layer{i}" for i in range(1, 5)]
    torch.testing.assert_close(cols[0].maps, expected, rtol=1e-4, atol=1e-5)
    assert any("RGA-C" in n for n in found.notes)


@torch.no_grad()
def test_mmga_maps_are_the_sigmoid_spatial_branches():
    model, x = tiny("mmga"), images()
    found = collect_maps(model, x)
    bb = model.backbone
    x2 = bb.stage("layer2")(bb.stage("layer1")(bb.stage("stem")(x)))
    s1 = torch.sigmoid(model.module1.spatial[1](model.module1.spatial[0](x2)))
    t = bb.stage("layer3")(x2)
    x3 = t * model.module1.se(t)[:, :, None, None] * F.adaptive_avg_pool2d(s1, t.shape[2:])
    s2 = torch.sigmoid(model.module2.spatial(x3))
    cols = column(found, "MMGA")
    assert [c.label for c in cols] == ["MMGA module1 whole", "MMGA module2 whole", "MMGA module2 upper",
                                       "MMGA module2 lower"]
    torch.testing.assert_close(cols[0].maps, s1[:, 0])
    for m in range(3):
        torch.testing.assert_close(cols[1 + m].maps, s2[:, m], rtol=1e-4, atol=1e-6)


@torch.no_grad()
def test_las_top_maps_and_the_seeded_ba_dropblock_region():
    model, x = tiny("lagnet", num_parts=8), images()
    found = collect_maps(model, x, las_top=2, seed=3)
    f_la = model.la_stream(model.trunk(x))
    a = model.las.attention[2](model.las.attention[1](model.las.attention[0](f_la)))  # ReLU(BN(conv))
    top = a.sum(dim=(2, 3)).argsort(dim=1, descending=True)
    las = column(found, "LAS")
    assert len(las) == 2
    for k in range(2):
        torch.testing.assert_close(las[k].maps, a[torch.arange(len(x)), top[:, k]])
    # the draw: w_k = sqrt(sum A_k + eps) over the M selected maps, one k per sample, drop A_k >= theta * max
    selected = a[torch.arange(len(x))[:, None], top[:, :8]]
    weights = torch.sqrt(selected.sum(dim=(2, 3)) + 1e-12)
    k = torch.multinomial(weights / weights.sum(1, keepdim=True), 1, generator=torch.Generator().manual_seed(3))[:, 0]
    chosen = selected[torch.arange(len(x)), k]
    expected = (chosen >= 0.5 * chosen.amax(dim=(1, 2), keepdim=True)).float()
    drop = column(found, "BA-DropBlock")[0]
    assert drop.kind == "region"
    torch.testing.assert_close(drop.maps, expected)
    assert expected.sum() > 0


def test_grad_cam_of_bot_is_the_gradient_weighted_layer4_map():
    model, x = tiny("bot"), images()
    cam, what = grad_cam(model, x, "class")
    assert what == "top identity class" and cam.shape == (len(x), *SIZE)
    # direct: layer4 map A, logits with BatchNorm in eval mode, score = logit of the top class
    a = model.backbone(x).detach().requires_grad_(True)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    logits = model.head(model.pool(a)).logits
    model.eval()
    score = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
    (grad,) = torch.autograd.grad(score, a)
    expected = F.relu((grad.mean(dim=(2, 3), keepdim=True) * a.detach()).sum(1, keepdim=True))
    expected = F.interpolate(expected, size=SIZE, mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(cam, expected, rtol=1e-4, atol=1e-7)
    assert cam.max() > 0


@pytest.mark.parametrize("name", ["laganet", "mmga"])
def test_grad_cam_uses_the_last_blocks_of_each_path(name, monkeypatch):
    """LAGA-Net: layer4 of each of its 4 branches; MMGA: layer4 only (layer3 feeds it via module 1)."""
    from reid.visualize import attention

    model, x = tiny(name), images(1)
    used = []
    real = attention._upstream_blocks

    def spy(seen):
        feeds = real(seen)
        used.extend(s["out"].shape for i, s in enumerate(seen) if i not in feeds)
        return feeds

    monkeypatch.setattr(attention, "_upstream_blocks", spy)
    cam, _ = grad_cam(model, x, "norm")
    assert len(used) == (4 if name == "laganet" else 1)
    assert all(s[1] == 512 for s in used)  # ResNet-18 layer4 width
    assert torch.isfinite(cam).all()


def test_mmga_ground_truth_masks_sit_beside_the_predicted_maps(tmp_path):
    import numpy as np
    from PIL import Image

    from reid.visualize.attention import figure_columns, read_masks

    (tmp_path / "query").mkdir()
    (tmp_path / "masks" / "query").mkdir(parents=True)
    paths = [str(tmp_path / "query" / f"000{i}_c1s1_000000_00.jpg") for i in range(2)]
    labels = np.zeros((8, 4), np.uint8)
    labels[1:4] = 5   # upper clothes (LIP)
    labels[4:7] = 9   # pants
    Image.fromarray(labels).save(tmp_path / "masks" / "query" / "0000_c1s1_000000_00.png")  # image 1 has none
    masks, found = read_masks(paths, SIZE)
    assert found == [True, False]
    whole, upper, lower = masks[0]
    assert tuple(whole.shape) == SIZE and whole.sum() == 48 * 32  # label rows 1..6 of 8, x8 nearest: 48 rows
    assert upper[8:32].eq(1).all() and upper[32:].eq(0).all() and lower[32:56].eq(1).all()
    assert masks[1].eq(0).all()
    cols = figure_columns(tiny("mmga"), images(), masks=(masks, found), cam_target="norm")
    labels = [c.label.split("\n")[0] for c in cols.columns]
    assert labels == ["MMGA module1 whole", "MMGA module2 whole", "MMGA module2 upper", "MMGA module2 lower",
                      "mask whole", "mask upper", "mask lower", "Grad-CAM"]
    assert any("no ground-truth mask" in n for n in cols.notes)

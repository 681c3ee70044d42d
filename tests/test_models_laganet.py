"""Multi-branch builder and LAGA-Net: output names and shapes, ladder switches, branch options,
parameter counts and groups, initialisation."""
from __future__ import annotations

import pytest
import torch

from reid.models import build_model, summary
from reid.models.heads import ReductionHead
from reid.models.multibranch import MultiBranchNet, parse_trunk
from reid.registry import ConfigError

R18 = {"name": "resnet18", "last_stride": 1}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


@pytest.mark.parametrize("size", [(384, 128), (324, 324)])
def test_laganet_resnet50_outputs(size):
    torch.manual_seed(0)
    model = build_model({"name": "laganet"}, num_classes=11, input_size=size)
    assert model.head_names == ["spatial", "channel", "global", "local.p1", "local.p2", "local.p3"]
    x = torch.randn(2, 3, *size)
    out = model.train()(x)
    assert set(out) == {"logits", "features"}
    assert [tuple(t.shape) for t in out["logits"]] == [(2, 11)] * 6
    assert [tuple(t.shape) for t in out["features"]] == [(2, 1024)] * 6
    model.eval()
    with torch.no_grad():
        feats = model(x)["features"]
    assert feats.shape == (2, 12288) and torch.isfinite(feats).all()
    # parameter count: trunk + 4 own layer4 copies + attention + 6 x (reduction + classifier)
    layer4 = count(model.branches[0].stages)
    head = (2048 * 1024 + 1024) + 2 * 1024 + (1024 * 11 + 11)
    attention = sum(count(b.before) + count(b.after) for b in model.branches)
    total = count(model)
    assert total == count(model.trunk) + 4 * layer4 + attention + 6 * head
    assert layer4 == 14_964_736 and count(model.trunk) == 23_508_032 - 14_964_736
    print(f"LAGA-Net ResNet-50 {size[0]}x{size[1]}, 11 ids: {total:,} parameters "
          f"(attention {attention:,})")
    assert f"{total:,}" in summary(model)


@pytest.mark.parametrize("switches, heads", [
    ({"use_local": False, "use_cam": False, "use_sam": False}, ["global"]),
    ({"use_local": True, "use_cam": False, "use_sam": False}, ["global", "local.p1", "local.p2", "local.p3"]),
    ({"use_local": True, "use_cam": True, "use_sam": False}, ["channel", "global", "local.p1", "local.p2", "local.p3"]),
    ({}, ["spatial", "channel", "global", "local.p1", "local.p2", "local.p3"]),
])
def test_ablation_ladder_switches(switches, heads):
    model = build_model({"name": "laganet", "backbone": R18, **switches}, 5, input_size=(64, 32))
    assert model.head_names == heads
    x = torch.randn(2, 3, 64, 32)
    out = model.train()(x)
    assert len(out["logits"]) == len(out["features"]) == len(heads)
    model.eval()
    with torch.no_grad():
        assert model(x)["features"].shape == (2, 512 * len(heads))


def test_gradients_reach_attention_and_groups_split():
    torch.manual_seed(1)
    model = build_model({"name": "laganet", "backbone": R18}, 4, input_size=(64, 32))
    out = model.train()(torch.randn(4, 3, 64, 32))
    sum(t.sum() for t in out["logits"] + out["features"]).backward()
    sam, cam = model.branches[0].after[0], model.branches[1].before[0]
    assert sam.gamma.grad is not None and sam.gamma.grad.abs() > 0
    assert cam.gamma.grad is not None and cam.gamma.grad.abs() > 0
    groups = model.param_groups()
    new = {id(p) for p in groups["new"]}
    assert id(sam.gamma) in new and id(sam.rel_h) in new and id(cam.gamma) in new
    assert {id(p) for p in groups["backbone"]}.isdisjoint(new)
    assert len(new) + len(groups["backbone"]) == len(list(model.parameters()))


def test_reduction_head_initialisation():
    torch.manual_seed(2)
    head = ReductionHead(2048, 751)
    linear, bn = head.reduction[0], head.reduction[1]
    assert linear.weight.std().item() == pytest.approx((2.0 / 1024) ** 0.5, rel=0.05)  # kaiming fan_out
    assert torch.all(linear.bias == 0) and torch.all(bn.bias == 0)
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.005)
    assert bn.weight.std().item() == pytest.approx(0.02, rel=0.15)
    assert head.classifier.weight.std().item() == pytest.approx(0.001, rel=0.05)
    assert head.reduction[2].negative_slope == 0.1 and head.reduction[3].p == 0.5


def test_share_layer4_and_independent_copies():
    own = build_model({"name": "laganet", "backbone": R18, "use_sam": False}, 5)
    shared = build_model({"name": "laganet", "backbone": R18, "use_sam": False, "share_layer4": True}, 5)
    assert own.branches[0].stages is not own.branches[1].stages
    assert shared.branches[0].stages is shared.branches[2].stages
    layer4 = count(own.branches[0].stages)
    assert count(own) - count(shared) == 2 * layer4  # three branches: two copies saved
    # independent copies start equal (same ImageNet init) but are separate tensors
    a, b = own.branches[0].stages[0][0].conv1.weight, own.branches[1].stages[0][0].conv1.weight
    assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


def test_mgn_like_configuration():
    """Trunk to layer3[0]; global branch stride 2, part branches stride 1 with stripes;
    conv 1x1 reduction heads; triplet on the global features only."""
    branches = [
        {"name": "g", "stride": 2, "pooling": "max", "head": "conv_reduction", "head_dim": 256},
        {"name": "p2", "stride": 1, "pooling": "max", "stripes": 2, "stripe_triplet": False,
         "head": "conv_reduction", "head_dim": 256},
        {"name": "p3", "stride": 1, "pooling": "max", "stripes": 3, "stripe_triplet": False,
         "head": "conv_reduction", "head_dim": 256},
    ]
    model = build_model({"name": "multibranch", "backbone": R18, "trunk": "layer3[0]", "branches": branches}, 6)
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        t = model.trunk(x)
        assert model.branches[0].feature_map(t).shape[2:] == (2, 1)
        assert model.branches[1].feature_map(t).shape[2:] == (4, 2)
    out = model.train()(x)
    assert len(out["logits"]) == 8 and len(out["features"]) == 3
    assert all(f.shape == (2, 256) for f in out["features"])
    model.eval()
    with torch.no_grad():
        assert model(x)["features"].shape == (2, 8 * 256)
    assert parse_trunk("layer3.0") == (3, 0) and parse_trunk("layer4") == (4, None)


def test_branch_keys_are_validated():
    with pytest.raises(ConfigError, match=r"branches\[0\].*did you mean 'stride'"):
        MultiBranchNet(3, backbone=R18, branches=[{"strides": 1}])
    with pytest.raises(ConfigError, match="'stripes' expects an int"):
        MultiBranchNet(3, backbone=R18, branches=[{"stripes": "3"}])
    with pytest.raises(ConfigError, match="did you mean 'cam'"):
        MultiBranchNet(3, backbone=R18, branches=[{"before": [{"name": "cma"}]}])
    with pytest.raises(ConfigError, match="did you mean 'reduction'"):
        MultiBranchNet(3, backbone=R18, branches=[{"head": "reductoin"}])
    with pytest.raises(ConfigError, match="input_size"):  # SAM-RPE depends on the map size
        build_model({"name": "laganet", "backbone": R18}, 3)
    with pytest.raises(ConfigError, match=r"\[height, width\]"):
        build_model({"name": "laganet", "backbone": R18, "input_size": [64]}, 3)


def test_input_size_from_config_or_builder():
    from_cfg = build_model({"name": "laganet", "backbone": R18, "input_size": [64, 32]}, 3, input_size=(32, 32))
    injected = build_model({"name": "laganet", "backbone": R18, "input_size": None}, 3, input_size=(32, 32))
    assert from_cfg.input_size == (64, 32) and injected.input_size == (32, 32)
    assert (from_cfg.branches[0].after[0].height, injected.branches[0].after[0].height) == (4, 2)


def test_triplet_input_switch_picks_the_triplet_tensor():
    """model.triplet_input: the triplet features are each head's embedding before the dropout
    (Linear -> BN -> LeakyReLU, recomputed here from the pooled vector) or the dropped-out one
    (zero or 1/(1-p) x the embedding); the classifiers see the dropped-out embedding either way."""
    models = {}
    for mode in ("embedding", "dropout"):
        torch.manual_seed(0)  # the same weights
        models[mode] = build_model({"name": "laganet", "backbone": R18, "use_sam": False, "use_cam": False,
                                    "use_local": False, "triplet_input": mode}, 5).train()
        assert models[mode].branches[0].heads[0].triplet_input == mode
    x = torch.randn(8, 3, 32, 16)
    outs = {}
    for mode, model in models.items():
        torch.manual_seed(1)  # the same dropout mask
        outs[mode] = model(x)
    branch = models["embedding"].branches[0]  # global: one head
    with torch.no_grad():
        pooled = branch.global_pool(branch.feature_map(models["embedding"].trunk(x)))
        embedding = branch.heads[0].reduction[:-1](pooled)  # batch statistics of the same batch
    torch.testing.assert_close(outs["embedding"]["features"][0].detach(), embedding)
    dropped = outs["dropout"]["features"][0].detach()
    kept = dropped != 0
    assert 0.3 < kept.float().mean() < 0.7  # p = 0.5
    torch.testing.assert_close(dropped[kept], 2 * embedding[kept])
    torch.testing.assert_close(outs["embedding"]["logits"][0], outs["dropout"]["logits"][0])


def test_triplet_input_is_validated():
    with pytest.raises(ConfigError, match="did you mean 'embedding'"):
        build_model({"name": "laganet", "backbone": R18, "use_sam": False, "triplet_input": "embeding"}, 3)
    with pytest.raises(ConfigError, match="triplet_input applies to head 'reduction' only"):
        MultiBranchNet(3, backbone=R18, branches=[{"head": "bnneck", "triplet_input": "dropout"}])

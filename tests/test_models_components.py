"""The model-side extension points: automatic registration, the backbone contract (stage shapes
against a real forward pass, the trunk/branch split), heads and poolings named per branch."""
from __future__ import annotations

import sys

import pytest
import torch

from reid.models import build_backbone, build_model
from reid.models.backbones import Backbone, ShapeSpec
from reid.models.heads import ConvReductionHead, GlobalPool
from reid.models.multibranch import MultiBranchNet
from reid.registry import HEADS, LAYERS, POOLINGS, ConfigError, Registry

R18 = {"name": "resnet18", "last_stride": 1}


@pytest.mark.parametrize("spec", [
    {"name": "resnet18", "last_stride": 1}, {"name": "resnet18", "last_stride": 2},
    {"name": "resnet50", "last_stride": 1}, {"name": "mobilenetv2", "last_stride": 2},
    {"name": "mobilenetv2", "last_stride": 1},
])
@pytest.mark.parametrize("size", [(64, 32), (75, 37)])
def test_output_shape_matches_a_forward_pass(spec, size):
    net = build_backbone(spec).eval()
    assert isinstance(net, Backbone)
    shapes = net.output_shape()
    assert list(shapes) == ["stem", "layer1", "layer2", "layer3", "layer4"]
    x = torch.zeros(1, 3, *size)
    with torch.no_grad():
        for name in net.stage_names:
            x = net.stage(name)(x)
            assert (x.shape[1], *x.shape[2:]) == (shapes[name].channels, *shapes[name].size(size)), name
    assert net.feature_dim == shapes["layer4"].channels == x.shape[1]
    assert net.stage_channels == [shapes[s].channels for s in ("layer1", "layer2", "layer3", "layer4")]


def test_shape_spec_size_rounds_up():
    assert ShapeSpec(8, 16).size((75, 37)) == (5, 3) and ShapeSpec(8, 4).size((64, 32)) == (16, 8)


def test_split_shares_the_trunk_and_copies_the_branch_with_its_stride():
    net = build_backbone(R18).eval()
    split = net.split("layer3[0]")
    assert split.trunk[-1][0] is net.layer3[0] and split.branch[0][0] is net.layer3[1]
    assert split.branch[1] is net.layer4 and split.trunk_shape == ShapeSpec(256, 16)
    assert split.branch_output(None) == ShapeSpec(512, 16) and split.branch_output(2) == ShapeSpec(512, 32)
    copy2 = torch.nn.Sequential(*split.copy_branch(2)).eval()
    assert copy2[1] is not net.layer4 and net.layer4[0].conv1.stride == (1, 1)
    t = torch.nn.Sequential(*split.trunk)(torch.zeros(1, 3, 64, 32))
    assert tuple(copy2(t).shape[1:]) == (512, *split.branch_output(2).size((64, 32)))
    whole = net.split("layer4")
    assert whole.branch == [] and not whole.strides_last
    with pytest.raises(ConfigError, match="block index out of range"):
        net.split("layer3[1]")  # ResNet-18's layer3 has 2 blocks: block 1 leaves nothing for the branch


def test_import_submodules_registers_every_module_of_a_package(tmp_path, monkeypatch):
    pkg = tmp_path / "plugpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from reid.registry import import_submodules\n"
                                     "import_submodules(__name__, __path__)\n")
    (pkg / "my_layer.py").write_text("from plugpkg.registry_holder import THINGS\n"
                                     "@THINGS.register('mine')\nclass Mine:\n    pass\n")
    (pkg / "registry_holder.py").write_text("from reid.registry import Registry\nTHINGS = Registry('thing')\n")
    (pkg / "_private.py").write_text("raise RuntimeError('private modules are not imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugpkg  # noqa: F401
    from plugpkg.registry_holder import THINGS

    try:
        assert THINGS.names() == ["mine"] and isinstance(THINGS, Registry)
        assert "plugpkg._private" not in sys.modules
    finally:
        for mod in [m for m in sys.modules if m == "plugpkg" or m.startswith("plugpkg.")]:
            del sys.modules[mod]


def test_every_network_component_is_registered_without_an_import_list():
    assert {"avg", "max", "avgmax", "gem"} == set(POOLINGS.names())
    assert {"bnneck", "reduction", "conv_reduction", "identity"} <= set(HEADS.names())
    assert {"cam", "sam_rpe", "las", "rga", "mmga", "bdb", "ba_dropblock"} <= set(LAYERS.names())


def test_head_and_pooling_as_name_or_mapping_build_the_same_network():
    flat = {"name": "g", "pooling": "gem", "head": "conv_reduction", "head_dim": 32, "neck_feat": "before"}
    mapped = {"name": "g", "pooling": {"name": "gem", "p": 3.0},
              "head": {"name": "conv_reduction", "dim": 32, "neck_feat": "before"}}
    x = torch.randn(2, 3, 64, 32)
    outs = []
    for spec in (flat, mapped):
        torch.manual_seed(0)
        model = MultiBranchNet(5, backbone=R18, branches=[spec]).eval()
        head = model.branches[0].heads[0]
        assert isinstance(head, ConvReductionHead) and head.out_dim == 32 and head.test_dim == 512
        assert isinstance(model.branches[0].global_pool, GlobalPool) and model.branches[0].global_pool.mode == "gem"
        with torch.no_grad():
            outs.append(model(x)["features"])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    torch.manual_seed(0)
    p4 = MultiBranchNet(5, backbone=R18, branches=[{"pooling": {"name": "gem", "p": 4.0}}])
    assert p4.branches[0].global_pool.p == 4.0


@pytest.mark.parametrize("branch, message", [
    ({"pooling": "stripes"}, "unknown pooling 'stripes'"),
    ({"pooling": "avgg"}, "did you mean 'avg'"),
    ({"pooling": {"name": "gem", "q": 3}}, "unknown key 'q' for pooling 'gem'; valid: p"),
    ({"head": "bnnek"}, "did you mean 'bnneck'"),
    ({"head": {"name": "reduction", "dimm": 8}}, "did you mean 'dim'"),
    ({"head": {"dim": 8}}, "mapping with a 'name'"),
    ({"head": "bnneck", "dropout": 0.1}, "dropout applies to head 'reduction' only"),
])
def test_branch_component_errors_name_the_fix(branch, message):
    with pytest.raises(ConfigError, match=message):
        build_model({"name": "multibranch", "backbone": R18, "branches": [branch]}, 3)

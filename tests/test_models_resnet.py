"""ResNet backbones: torchvision parameter names, strict loading, last stride, offline weights error."""
from __future__ import annotations

import urllib.error

import pytest
import torch

from reid.models.backbones.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    WeightsError,
    hub_checkpoint_path,
    resnet18,
    resnet50,
)
from reid.registry import BACKBONES

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_names(blocks: list[int], convs_per_block: int) -> list[str]:
    """State-dict names of torchvision's ResNet, from its architecture rule."""
    names = ["conv1.weight", *(f"bn1.{s}" for s in BN)]
    for stage, n in enumerate(blocks, start=1):
        for b in range(n):
            prefix = f"layer{stage}.{b}"
            for c in range(1, convs_per_block + 1):
                names += [f"{prefix}.conv{c}.weight", *(f"{prefix}.bn{c}.{s}" for s in BN)]
            # torchvision: the first block of a stage downsamples when stride or width change
            # (all four stages of a Bottleneck net; stages 2-4 of a BasicBlock net)
            if b == 0 and (convs_per_block == 3 or stage > 1):
                names += [f"{prefix}.downsample.0.weight", *(f"{prefix}.downsample.1.{s}" for s in BN)]
    return names + ["fc.weight", "fc.bias"]


def test_resnet50_state_dict_names_equal_torchvision():
    names = list(ResNet(Bottleneck, [3, 4, 6, 3]).state_dict())
    assert len(names) == 320
    assert names == torchvision_names([3, 4, 6, 3], 3)


def test_resnet18_names_and_dropped_classifier():
    assert list(ResNet(BasicBlock, [2, 2, 2, 2]).state_dict()) == torchvision_names([2, 2, 2, 2], 2)
    model = resnet18()
    assert not any(k.startswith("fc.") for k in model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == 11_176_512  # 11,689,512 minus the fc


def test_strict_round_trip_of_a_saved_imagenet_dict(tmp_path):
    src = ResNet(BasicBlock, [2, 2, 2, 2])
    path = tmp_path / "resnet18.pth"
    torch.save(src.state_dict(), path)
    model = resnet18(weights=str(path))
    for key, value in model.state_dict().items():
        assert torch.equal(value, src.state_dict()[key]), key
    assert "fc.weight" not in model.state_dict()
    torch.save({"module." + k: v for k, v in src.state_dict().items() if not k.startswith("fc.")}, path)
    assert torch.equal(resnet18(weights=str(path)).conv1.weight, src.conv1.weight)
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": src.conv1.weight}, bad)
    with pytest.raises(WeightsError, match="torchvision's names"):
        resnet18(weights=str(bad))


@pytest.mark.parametrize("last_stride, size", [(2, (2, 1)), (1, (4, 2))])
def test_last_stride_and_stages(last_stride, size):
    model = resnet18(last_stride=last_stride).eval()
    x = torch.randn(1, 3, 64, 32)
    channels = []
    for name in ("stem", "layer1", "layer2", "layer3", "layer4"):
        x = model.stage(name)(x)
        channels.append(x.shape[1])
    assert channels == [64, 64, 128, 256, 512] and tuple(x.shape[2:]) == size
    assert model.stage_channels == [64, 128, 256, 512] and model.feature_dim == 512


def test_resnet50_channels_and_branch_copy():
    model = resnet50(last_stride=1)
    assert model.stage_channels == [256, 512, 1024, 2048] and model.feature_dim == 2048
    branch = model.branch_stage("layer4", stride=2)
    assert branch[0].conv2.stride == (2, 2) and branch[0].downsample[0].stride == (2, 2)
    assert model.layer4[0].conv2.stride == (1, 1)  # the original is untouched
    assert branch[0].conv1.weight.data_ptr() != model.layer4[0].conv1.weight.data_ptr()
    assert torch.equal(branch[0].conv1.weight, model.layer4[0].conv1.weight)


def test_registered_with_config_options():
    for name in ("resnet18", "resnet34", "resnet50"):
        assert BACKBONES.defaults(name) == {"pretrained": False, "weights": None, "last_stride": 2,
                                          "stem_relu": True}


def test_offline_without_cached_file_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    expected = hub_checkpoint_path("resnet50")
    assert expected == tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    with pytest.raises(WeightsError) as info:
        resnet50(pretrained=True)
    message = str(info.value)
    assert str(expected) in message and "resnet50-0676ba61.pth" in message
    assert "model.backbone.pretrained=false" in message
    # a file placed in the hub cache is then used without any download
    expected.parent.mkdir(parents=True)
    src = ResNet(BasicBlock, [2, 2, 2, 2])
    torch.save(src.state_dict(), hub_checkpoint_path("resnet18"))
    assert torch.equal(resnet18(pretrained=True).layer1[0].conv1.weight, src.layer1[0].conv1.weight)


def fake_hub(tmp_path, monkeypatch, *files: str):
    """An offline torch.hub cache under tmp_path holding tiny (invalid) checkpoint ``files``."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    for name in files:
        torch.save({"fc.weight": torch.zeros(1)}, folder / name)
    return folder


def test_imagenet_v2_file_is_refused_unless_named(tmp_path, monkeypatch):
    """torchvision's IMAGENET1K_V2 ResNet-50 (resnet50-11ad3fa6.pth, another training recipe) never
    stands in for the V1 file; it is read only for ``weights: IMAGENET1K_V2``."""
    folder = fake_hub(tmp_path, monkeypatch, "resnet50-11ad3fa6.pth")
    with pytest.raises(WeightsError) as info:
        resnet50(pretrained=True)
    message = str(info.value)
    assert "not available offline" in message and str(folder / "resnet50-0676ba61.pth") in message
    assert "resnet50-11ad3fa6.pth (IMAGENET1K_V2)" in message and "never in their place" in message
    # named: the V2 file is the one read (the tiny fake is then rejected as not a ResNet-50 state dict)
    with pytest.raises(WeightsError, match=r"resnet50-11ad3fa6\.pth: not a resnet50 state dict"):
        resnet50(weights="IMAGENET1K_V2")
    with pytest.raises(WeightsError, match="did you mean 'IMAGENET1K_V2'"):
        resnet50(weights="IMAGENET1K_V3")
    with pytest.raises(WeightsError, match="unknown ImageNet weights 'IMAGENET1K_V2' for resnet18"):
        resnet18(weights="IMAGENET1K_V2")


def test_v1_files_under_either_name_are_used(tmp_path, monkeypatch):
    """V1 under torchvision's older file name (resnet50-19c8e357.pth) is the same weights: accepted."""
    fake_hub(tmp_path, monkeypatch, "resnet50-19c8e357.pth", "resnet50-11ad3fa6.pth")
    for kwargs in ({"pretrained": True}, {"weights": "IMAGENET1K_V1"}):
        with pytest.raises(WeightsError, match=r"resnet50-19c8e357\.pth: not a resnet50 state dict"):
            resnet50(**kwargs)


def test_stem_relu_false_drops_only_the_stem_relu():
    """BoT's release: no ReLU after bn1. The stem's output then has negative values (max-pooled
    bn1 output), with the switch on none; every other layer and every parameter name is unchanged."""
    torch.manual_seed(0)
    with_relu, without = resnet18(), resnet18(stem_relu=False)
    without.load_state_dict(with_relu.state_dict())
    x = torch.randn(2, 3, 32, 32)
    a, b = with_relu.stem(x), without.stem(x)
    assert (a >= 0).all() and (b < 0).any()
    assert torch.equal(a, b.clamp(min=0))  # relu and max-pool commute
    assert list(with_relu.state_dict()) == list(without.state_dict())
    assert BACKBONES.build("resnet18", stem_relu=False).stem_relu is False

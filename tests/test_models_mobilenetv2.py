"""MobileNetV2 backbone: checkpoint names, stage shapes, last stride, offline ImageNet weights."""
from __future__ import annotations

import re

import pytest
import torch

from reid.models.backbones.mobilenetv2 import (
    MobileNetV2,
    WeightsError,
    _from_torchvision_names,
    default_weights_path,
    mobilenetv2,
)


def expected_names() -> list[str]:
    """The 312 state-dict names of the flat ImageNet checkpoint layout, from the architecture rule."""
    names = []

    def bn(prefix):
        return [f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]

    names += ["features.0.0.weight", *bn("features.0.1")]
    expansions = [1] + [6] * 16
    for n, t in enumerate(expansions, start=1):
        convs = [0, 3] if t == 1 else [0, 3, 6]
        for c in convs:
            names += [f"features.{n}.conv.{c}.weight", *bn(f"features.{n}.conv.{c + 1}")]
    names += ["features.18.0.weight", *bn("features.18.1")]
    return names


def test_state_dict_names_match_the_imagenet_layout():
    names = list(MobileNetV2().state_dict())
    assert len(names) == 312
    assert sorted(names) == sorted(expected_names())


@pytest.mark.parametrize("last_stride, size", [(2, (8, 4)), (1, (16, 8))])
def test_stage_shapes(last_stride, size):
    model = MobileNetV2(last_stride=last_stride).eval()
    x = torch.randn(1, 3, 256, 128)
    channels = []
    for stage in ("stem", "layer1", "layer2", "layer3", "layer4"):
        x = model.stage(stage)(x)
        channels.append(x.shape[1])
    assert channels == [16, 24, 32, 96, 1280] and tuple(x.shape[2:]) == size
    assert torch.allclose(model(torch.ones(1, 3, 64, 32)), model.features(torch.ones(1, 3, 64, 32)))


def test_torchvision_names_are_mapped_onto_the_flat_layout():
    flat = MobileNetV2().state_dict()
    nested = {}
    for key, value in flat.items():
        m = re.match(r"features\.(\d+)\.conv\.(\d+)\.(.+)", key)
        if not m:
            nested[key] = value
            continue
        n, i, rest = int(m[1]), int(m[2]), m[3]
        n_sub = 1 if n == 1 else 2
        nested[f"features.{n}.conv.{i // 3}.{i % 3}.{rest}" if i < 3 * n_sub
               else f"features.{n}.conv.{n_sub + i - 3 * n_sub}.{rest}"] = value
    assert _from_torchvision_names(nested).keys() == flat.keys()


def test_pretrained_file_loads_strictly_and_missing_file_is_a_clear_error(tmp_path):
    src = MobileNetV2()
    path = tmp_path / "w.pt"
    torch.save({**src.state_dict(), "classifier.1.weight": torch.zeros(1000, 1280)}, path)
    model = mobilenetv2(weights=str(path))
    assert torch.equal(model.features[3].conv[0].weight, src.features[3].conv[0].weight)
    with pytest.raises(WeightsError, match="fetch_mobilenetv2_weights.py"):
        mobilenetv2(pretrained=True, weights=str(tmp_path / "missing.pt"))


def test_real_imagenet_weights_when_fetched():
    path = default_weights_path()
    if not path.is_file():
        pytest.skip(f"run scripts/fetch_mobilenetv2_weights.py to place {path}")
    model = mobilenetv2(pretrained=True).eval()
    # ImageNet features of a natural-looking smooth image are non-degenerate
    y = model(torch.rand(1, 3, 128, 64))
    assert torch.isfinite(y).all() and y.std() > 0


def test_branch_stage_is_an_independent_copy_with_its_stride():
    model = MobileNetV2(last_stride=2).eval()
    branch = model.branch_stage("layer4", stride=1).eval()
    x = torch.randn(1, 96, 8, 4)
    assert branch(x).shape[2:] == (8, 4) and model.layer4(x).shape[2:] == (4, 2)
    assert branch[0].conv[0].weight is not model.features[14].conv[0].weight

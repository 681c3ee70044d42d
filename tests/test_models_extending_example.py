"""The worked example of docs/extending_models.md runs: its layer file registers the layer, its YAML
builds a multi-branch network that uses it after each branch's stages, and the gate is applied."""
from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import torch
import yaml

from reid.models import build_model
from reid.registry import LAYERS

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending_models.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def example_layer():
    module = types.ModuleType("spatial_gate_example")
    exec(compile(blocks("python")[0], str(DOC), "exec"), module.__dict__)  # noqa: S102 - our own doc
    try:
        yield module
    finally:
        LAYERS._items.pop("example_spatial_gate", None)


def test_worked_example_layer_and_yaml_build_and_run(example_layer):
    assert LAYERS.get("example_spatial_gate") is example_layer.SpatialGate
    section = yaml.safe_load(blocks("yaml")[0])["model"]
    section["backbone"] = {"name": "resnet18", "last_stride": 1}
    torch.manual_seed(0)
    model = build_model(section, 5).eval()
    gates = [b.after[0] for b in model.branches]
    assert all(isinstance(g, example_layer.SpatialGate) for g in gates)
    assert gates[0].score.in_channels == 512 and gates[0].score.bias is not None and gates[1].score.bias is None
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        out = model(x)["features"]
    assert out.shape == (2, 5 * 256)  # global; part: its global + 3 stripes
    assert gates[0].maps.shape == (2, 1, 2, 1) and gates[1].maps.shape == (2, 1, 4, 2)  # stride 32 / 16
    branch = model.branches[1]
    with torch.no_grad():
        fmap = branch.stages(model.trunk(x))
        torch.testing.assert_close(branch.feature_map(model.trunk(x)), fmap * torch.sigmoid(gates[1].score(fmap)))

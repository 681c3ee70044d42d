"""ONNX and TorchScript exports of BoT and LAGA-Net give PyTorch's features for any batch size."""
from __future__ import annotations

import json

import pytest
import torch
from inference_tools import ROOT

from reid.config import load_config
from reid.inference.export import FeatureGraph, export_model, run_exported
from reid.models import build_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def tiny_model(config: str, size: tuple[int, int], *overrides: str):
    trunk = "model.backbone={name: resnet18, last_stride: 1, pretrained: false}"
    cfg = load_config(ROOT / "configs" / config, [f"input.size=[{size[0]},{size[1]}]", trunk, *overrides])
    torch.manual_seed(0)
    model = build_model(cfg.model, 3, input_size=cfg.input.size).eval()
    for m in model.modules():  # BatchNorm statistics away from their initial values
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model, cfg


def metadata(path, fmt: str) -> dict[str, str]:
    if fmt == "onnx":
        return {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    files = {"reid.json": ""}
    torch.jit.load(str(path), _extra_files=files)
    return json.loads(files["reid.json"])


# LAGA-Net at 96x32: its 2- and 3-stripe pooling divides the 6-row map, which the fast ONNX exporter
# needs; flip averaging (a second pass in the graph) is checked on BoT only, to keep the test short
@pytest.mark.parametrize("config,size,flip", [("bot/market1501.yaml", (64, 32), True),
                                              ("laganet/market1501.yaml", (96, 32), False)])
def test_exported_features_equal_pytorch_for_another_batch_size(config, size, flip, tmp_path):
    model, cfg = tiny_model(config, size, f"test.flip={str(flip).lower()}")
    images = torch.randn(3, 3, *size, generator=torch.Generator().manual_seed(3))  # traced with 2
    with torch.no_grad():
        expected = FeatureGraph(model, flip=flip)(images)
        plain = model(images)["features"]
        both = plain + model(torch.flip(images, dims=[3]))["features"] if flip else plain
    assert torch.allclose(expected, torch.nn.functional.normalize(both, dim=1), atol=1e-5)
    for fmt in ("onnx", "torchscript"):
        path = export_model(model, cfg, tmp_path / f"m.{fmt}", fmt, batch=2)
        got = run_exported(path, fmt, images)
        assert got.shape == expected.shape == (3, plain.shape[1])
        assert float((got - expected).abs().max()) <= 1e-4, fmt
        meta = metadata(path, fmt)
        assert json.loads(meta["reid.pixel_mean"]) == cfg.input.pixel_mean
        assert json.loads(meta["reid.pixel_std"]) == cfg.input.pixel_std
        assert json.loads(meta["reid.input_size"]) == list(size) and json.loads(meta["reid.flip_averaged"]) == flip
    dims = onnx.load(str(tmp_path / "m.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, *size]  # dynamic batch

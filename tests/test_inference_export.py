"""ONNX and TorchScript exports of BoT and LAGA-Net give PyTorch's features for any batch size."""
from __future__ import annotations

import json

import onnx
import pytest
import torch
from inference_tools import ROOT, SIZE

from reid.config import load_config
from reid.inference.export import FeatureGraph, export_model, run_exported
from reid.models import build_model

pytest.importorskip("onnxruntime")


def tiny_model(config: str, *overrides: str):
    cfg = load_config(ROOT / "configs" / config, [f"input.size=[{SIZE[0]},{SIZE[1]}]", *overrides,
                                                   "model.backbone={name: resnet18, last_stride: 1, pretrained: false}"])
    torch.manual_seed(0)
    model = build_model(cfg.model, 3, input_size=cfg.input.size).eval()
    for m in model.modules():  # BatchNorm statistics away from their initial values
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model, cfg


@pytest.mark.parametrize("config,fmt", [("bot/market1501.yaml", "onnx"), ("laganet/market1501.yaml", "onnx"),
                                        ("bot/market1501.yaml", "torchscript"),
                                        ("laganet/market1501.yaml", "torchscript")])
def test_exported_features_equal_pytorch_for_another_batch_size(config, fmt, tmp_path):
    model, cfg = tiny_model(config, "test.flip=true")
    path = export_model(model, cfg, tmp_path / f"m.{fmt}", fmt, batch=2)
    images = torch.randn(5, 3, *SIZE, generator=torch.Generator().manual_seed(3))  # traced with 2
    with torch.no_grad():
        expected = FeatureGraph(model, flip=True)(images)
        plain = model(images)["features"]
    got = run_exported(path, fmt, images)
    assert got.shape == expected.shape == (5, plain.shape[1])
    assert float((got - expected).abs().max()) <= 1e-4
    assert torch.allclose(got.norm(dim=1), torch.ones(5), atol=1e-5)  # L2-normalised in the graph
    flipped = model(torch.flip(images, dims=[3]))["features"]
    assert torch.allclose(expected, torch.nn.functional.normalize(plain + flipped, dim=1), atol=1e-5)
    if fmt == "onnx":
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, *SIZE]  # dynamic batch
    else:
        files = {"reid.json": ""}
        torch.jit.load(str(path), _extra_files=files)
        meta = json.loads(files["reid.json"])
    assert json.loads(meta["reid.pixel_mean"]) == cfg.input.pixel_mean
    assert json.loads(meta["reid.pixel_std"]) == cfg.input.pixel_std
    assert json.loads(meta["reid.input_size"]) == list(SIZE) and meta["reid.flip_averaged"] == "true"

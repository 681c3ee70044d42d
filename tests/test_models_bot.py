"""BoT baseline: outputs per mode, BNNeck, parameter groups, builder and summary."""
from __future__ import annotations

import pytest
import torch

from reid.models import build_model, summary
from reid.models.heads import GlobalPool, StripePool
from reid.registry import ConfigError

CFG = {"name": "bot", "backbone": {"name": "resnet18", "last_stride": 1}}


def test_train_and_eval_outputs():
    model = build_model(CFG, num_classes=7)
    x = torch.randn(4, 3, 64, 32)
    out = model.train()(x)
    assert set(out) == {"logits", "features"}
    assert out["logits"].shape == (4, 7) and out["features"].shape == (4, 512)
    model.eval()
    with torch.no_grad():
        feats = model(x)["features"]
        pooled = model.backbone(x).mean(dim=(2, 3))
    assert feats.shape == (4, 512)
    assert torch.allclose(feats, model.head.bn(pooled), atol=1e-5)  # neck_feat="after"
    before = build_model({**CFG, "neck_feat": "before"}, 7).eval()
    before.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(before(x)["features"], pooled, atol=1e-5)


def test_bnneck_bias_frozen_and_classifier_init():
    model = build_model(CFG, 751)
    assert not model.head.bn.bias.requires_grad and model.head.classifier.bias is None
    assert model.head.classifier.weight.std().item() == pytest.approx(0.001, rel=0.1)


def test_param_groups_partition_the_parameters():
    model = build_model(CFG, 5)
    groups = model.param_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in groups["backbone"]} == {id(p) for p in model.backbone.parameters()}


def test_unknown_option_and_summary():
    with pytest.raises(ConfigError, match="did you mean 'pooling'"):
        build_model({**CFG, "poling": "avg"}, 5)
    text = summary(build_model(CFG, 5))
    n = sum(p.numel() for p in build_model(CFG, 5).parameters())
    assert f"{n:,}" in text and "backbone" in text and "trainable" in text


def test_poolings():
    x = torch.arange(2 * 3 * 6 * 2, dtype=torch.float32).view(2, 3, 6, 2)
    assert torch.equal(GlobalPool("avg")(x), x.mean(dim=(2, 3)))
    assert torch.equal(GlobalPool("avgmax")(x), x.mean(dim=(2, 3)) + x.amax(dim=(2, 3)))
    stripes = StripePool(3)(x)
    assert len(stripes) == 3 and torch.equal(stripes[1], x[:, :, 2:4].mean(dim=(2, 3)))

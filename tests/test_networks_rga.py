"""RGA-Net: outputs, input-size check, RGA-SC parameter counts at 384x128, every configs/rganet
config's recipe (the step and learning checks shared by every family: test_networks_common.py)."""
from __future__ import annotations

import pytest
import torch
from nettools import (
    R18,
    SIZE,
    batch_of,
    config_files,
    config_id,
    load,
)

from reid.models import build_model

NET = "rganet"
CONFIGS = config_files(NET)
HAND_SETS = ("hands11k_dorsal_right", "hands11k_dorsal_left", "hands11k_palmar_right", "hands11k_palmar_left", "hd")


def test_outputs_and_eval_feature():
    torch.manual_seed(0)
    model = build_model({"name": NET, "backbone": R18, "input_size": list(SIZE)}, 5)
    assert set(model.rga) == {"layer1", "layer2", "layer3", "layer4"}
    assert [(m.channels, m.height, m.width) for m in model.rga.values()] == [
        (64, 16, 8), (128, 8, 4), (256, 4, 2), (512, 4, 2)]
    x = batch_of()["images"]
    out = model.train()(x)
    assert set(out) == {"logits", "features"}
    assert out["logits"].shape == (8, 5) and out["features"].shape == (8, 512)
    with torch.no_grad():
        ev = model.eval()(x)
    assert set(ev) == {"features"} and ev["features"].shape == (8, 512)
    assert {"backbone", "new"} == set(model.param_groups())


@pytest.mark.parametrize("spatial,channel", [(True, False), (False, True)])
def test_rga_variants(spatial, channel):
    model = build_model({"name": NET, "backbone": R18, "input_size": list(SIZE), "use_spatial": spatial,
                         "use_channel": channel}, 5)
    for m in model.rga.values():
        assert (m.spatial is not None, m.channel is not None) == (spatial, channel)
    assert model.train()(batch_of()["images"])["logits"].shape == (8, 5)


def test_wrong_input_size_is_a_clear_error():
    model = build_model({"name": NET, "backbone": R18, "input_size": list(SIZE)}, 5).eval()
    with pytest.raises(ValueError, match=r"built for 64x32 inputs .*model.input_size"):
        model(torch.zeros(1, 3, 128, 64))


def test_rga_sc_parameter_counts_at_384x128():
    """The four RGA-SC modules at 384x128: about 5.96M, 0.54M, 0.68M, 2.66M; the rest is ResNet-50 +
    the BNNeck head."""
    model = build_model({"name": NET, "backbone": {"name": "resnet50", "last_stride": 1, "pretrained": False},
                         "input_size": [384, 128]}, 751)
    counts = [sum(p.numel() for p in m.parameters()) / 1e6 for m in model.rga.values()]
    assert counts == pytest.approx([5.96, 0.54, 0.68, 2.66], abs=0.01)
    assert [(m.height, m.width) for m in model.rga.values()] == [(96, 32), (48, 16), (24, 8), (24, 8)]
    backbone = sum(p.numel() for p in model.backbone.parameters())
    head = sum(p.numel() for p in model.head.parameters())
    assert backbone == 23_508_032 and head == 2 * 2048 + 2048 * 751
    total = sum(p.numel() for p in model.parameters())
    assert total == backbone + head + sum(sum(p.numel() for p in m.parameters()) for m in model.rga.values())


def test_hand_configs_present():
    assert {f"{NET}/{d}.yaml" for d in HAND_SETS} <= {config_id(p) for p in CONFIGS}  # LAGA-Net's Table V


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_config_recipe(path):
    cfg = load(path)
    hands = path.stem in HAND_SETS
    assert cfg.model.name == NET and cfg.model.backbone.last_stride == 1
    assert cfg.model.input_size is None  # built for input.size
    assert (cfg.sampler.num_ids, cfg.sampler.num_instances) == (16, 4)
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == pytest.approx(8e-4)
    assert cfg.schedule.warmup_epochs == 20 and cfg.schedule.warmup_start_lr == pytest.approx(8e-6)
    assert cfg.schedule.milestones[:3] == [80, 120, 160] and cfg.schedule.gamma == 0.5 and cfg.train.epochs == 600
    assert cfg.losses.ce.epsilon == 0.1 and cfg.losses.triplet.margin == 0.3
    if hands:  # the hand input pipeline (configs/_base_/inputs/hands_324.yaml), every image cropped
        assert cfg.input.size == [324, 324] and round(324 * cfg.augment.crop_scale) == 356
        assert cfg.augment.erasing.prob == 0.0 and cfg.augment.crop_prob == 1.0
        jitter = cfg.augment.color_jitter
        assert (jitter.prob, jitter.brightness, jitter.contrast, jitter.saturation) == (1.0, 0.1, 0.1, 0.1)
        assert cfg.dataset.name == path.stem and cfg.reference.source
    else:
        assert cfg.input.size == [256, 128]
        assert cfg.augment.erasing.prob == 0.5 and cfg.augment.crop_prob == 0.5
    if path.parent.name == NET and path.stem in ("market1501", "cuhk03_labeled", "cuhk03_detected", "msmt17"):
        assert cfg.reference.rank1 and cfg.reference.mAP and cfg.reference.source


def test_checkpointed_attention_trains_exactly_as_plain():
    """checkpoint_attention=true recomputes the RGA activations in backward: same loss, gradients
    and BatchNorm running statistics as the plain network."""
    runs = []
    for flag in (False, True):
        torch.manual_seed(0)
        model = build_model({"name": NET, "backbone": R18, "input_size": list(SIZE),
                             "checkpoint_attention": flag}, 5).train()
        out = model(batch_of()["images"])
        (out["logits"].logsumexp(1).mean() + out["features"].pow(2).mean()).backward()
        runs.append(({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
                     {n: b.clone() for n, b in model.named_buffers()}))
    (grads, buffers), (grads_ck, buffers_ck) = runs
    assert grads.keys() == grads_ck.keys() and buffers.keys() == buffers_ck.keys()
    for n in grads:
        torch.testing.assert_close(grads_ck[n], grads[n], rtol=1e-5, atol=1e-6)
    for n in buffers:
        torch.testing.assert_close(buffers_ck[n], buffers[n], rtol=0, atol=0)

"""LAGA-Net's Market-1501 recipe pinned to its paper (no released code) and, where the paper is
silent, to the nearest code, its predecessor nathanlem1/MBA-Net (file:line). The paper's locations
are its equations and implementation details as quoted in the configs (no paper text is stored
with the project)."""
from __future__ import annotations

from recipes import Pin, check, check_doc, market

NET = "laganet"
PAPER = "paper, implementation details"
LR = "MBA-Net train.py:73-76,354-357 + utils/lr_scheduler.py (LRScheduler: warmup 10, x0.5 at 40, 60)"
BASE = 8e-4
PINS = [
    Pin("model.name", "laganet", "paper (four branches: spatial, channel, global, local)"),
    Pin("model.backbone.name", "resnet50", PAPER),
    Pin("model.backbone.last_stride", 1, PAPER),
    Pin("model.use_cam", True, "paper eq. 2 (CAM)"),
    Pin("model.use_sam", True, "paper eq. 3-4 (SAM-RPE)"),
    Pin("model.use_local", True, "paper (3 horizontal stripes)"),
    Pin("model.stripes", 3, "paper (local branch)"),
    Pin("model.cam_variant", "softmax", "paper eq. 2 (MBA-Net: rowmax - energy)"),
    Pin("model.share_layer4", False, "paper (four independent layer4; MBA-Net shares one)"),
    Pin("model.embedding_dim", 1024, "paper (2048 -> 1024 reductions)"),
    Pin("model.dropout", 0.5, "paper; MBA-Net model/MBA.py:84 (drop_rate=0.5)"),
    Pin("model.triplet_input", "embedding", "paper eq. 8-11 (the learned embeddings)"),
    Pin("input.size", [384, 128], PAPER),
    Pin("augment.flip_prob", 0.5, PAPER),
    Pin("augment.erasing.prob", 0.5, f"{PAPER}; MBA-Net train.py:292 (fill 0)"),
    Pin("augment.erasing.fill", "mean", "MBA-Net train.py:292 (mean=[0, 0, 0] after Normalize)"),
    Pin("sampler.num_ids", 5, PAPER + " (P = 5, K = 4)"),
    Pin("sampler.num_instances", 4, PAPER),
    Pin("sampler.epoch", "images", "MBA-Net train.py:313 (a shuffled pass over the images)"),
    Pin("optimizer.name", "adam", f"{PAPER}; MBA-Net train.py:345-349"),
    Pin("optimizer.lr", BASE, "MBA-Net train.py:224"),
    Pin("optimizer.weight_decay", 5e-4, "MBA-Net train.py:348"),
    Pin("optimizer.lr_mults", {"backbone": 0.1}, "MBA-Net train.py:75,332-333"),
    Pin("lr@0", 8e-6, LR),
    Pin("lr@9", 8e-6 + (BASE - 8e-6) * 9 / 10, LR),
    Pin("lr@10", BASE, LR),
    Pin("lr@39", BASE, LR),
    Pin("lr@40", BASE / 2, LR),
    Pin("lr@60", BASE / 4, LR),
    Pin("lr@69", BASE / 4, LR),
    Pin("train.epochs", 70, "MBA-Net train.py:62 (num_epochs=70)"),
    Pin("train.amp", "off", "paper (fp32); MBA-Net train.py:239-244 (--fp16 / --bf16 off)"),
    Pin("losses.ce.epsilon", 0.1, "paper eq. 8 (label smoothing); MBA-Net train.py:21"),
    Pin("losses.ce.weight", 1.0, "paper eq. 11"),
    Pin("losses.ce.reduce", "sum", "paper eq. 11 (sum over the 6 heads)"),
    Pin("losses.triplet.weight", 0.1, "paper eq. 11"),
    Pin("losses.triplet.margin", 1.2, "paper eq. 9"),
    Pin("losses.triplet.reduce", "sum", "paper eq. 11"),
    Pin("test.flip", True, "MBA-Net eval_query_gallery.py:51-57,71 (image + mirror summed)"),
    Pin("test.normalize", True, "MBA-Net eval_query_gallery.py:74-75"),
    Pin("test.metric", "cosine", "paper (cosine distance); MBA-Net evaluation on normalised features"),
]


def test_market_recipe_is_the_paper():
    check(market(NET), PINS)


def test_fidelity_doc_shows_these_pins():
    check_doc(NET, PINS)

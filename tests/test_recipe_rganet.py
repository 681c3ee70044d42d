"""RGA-Net's Market-1501 recipe pinned to its release (microsoft/Relation-Aware-Global-Attention-Networks:
scripts/run_rgasc_cuhk03.sh running main_imgreid.py; the release has no Market script, so the recipe
takes that script's settings with the Market data set). Each value cites the release's file:line."""
from __future__ import annotations

from recipes import Pin, check, check_doc, market

NET = "rganet"
SH = "scripts/run_rgasc_cuhk03.sh"
LR = "main_imgreid.py:165-173, reid/utils/lr_scheduler.py:49-61"
BASE = 8e-4
PINS = [
    Pin("model.name", "rganet", "reid/models/rga_model.py:56-105"),
    Pin("model.backbone.name", "resnet50", f"{SH}:5 (resnet50_rga)"),
    Pin("model.backbone.last_stride", 1, "reid/models/rga_model.py:60"),
    Pin("model.use_spatial", True, f"{SH}:13 (rgasc); reid/models/rga_model.py:90"),
    Pin("model.use_channel", True, f"{SH}:13 (rgasc); reid/models/rga_model.py:90"),
    Pin("model.spatial_ratio", 8, "reid/models/rga_model.py:60,84 (scale=8)"),
    Pin("model.channel_ratio", 8, "reid/models/rga_model.py:60,84"),
    Pin("model.down_ratio", 8, "reid/models/rga_model.py:60,84 (d_scale=8)"),
    Pin("model.neck_feat", "after", "main_imgreid.py:126-129 (feat, after the BN; feat_ is also printed)"),
    Pin("input.size", [256, 128], "main_imgreid.py:90-92"),
    Pin("input.interpolation", "bilinear", "reid/utils/data/transforms.py:110"),
    Pin("input.pixel_mean", [0.485, 0.456, 0.406], "reid/img_trainers.py:22"),
    Pin("input.pixel_std", [0.229, 0.224, 0.225], "reid/img_trainers.py:22"),
    Pin("augment.crop", "upscale", "main_imgreid.py:51; reid/utils/data/transforms.py:124-130"),
    Pin("augment.crop_scale", 1.125, "reid/utils/data/transforms.py:124"),
    Pin("augment.crop_prob", 0.5, "reid/utils/data/transforms.py:110,121-122"),
    Pin("augment.flip_prob", 0.5, "main_imgreid.py:52"),
    Pin("augment.color_jitter.prob", 0.0, "main_imgreid.py:50-54"),
    Pin("augment.erasing.prob", 0.5, "reid/img_trainers.py:17,23; main_imgreid.py:246"),
    Pin("augment.erasing.area", [0.02, 0.4], "reid/utils/data/transforms.py:66"),
    Pin("augment.erasing.aspect", 0.3, "reid/utils/data/transforms.py:66"),
    Pin("augment.erasing.attempts", 100, "reid/utils/data/transforms.py:78"),
    Pin("augment.erasing.fill", "mean", "reid/img_trainers.py:23 (mean=[0, 0, 0] after Normalize)"),
    Pin("sampler.num_ids", 16, f"{SH}:6 (BATCH_SIZE=64) / main_imgreid.py:210 (4)"),
    Pin("sampler.num_instances", 4, "main_imgreid.py:210"),
    Pin("sampler.epoch", "identities", "reid/utils/data/sampler.py (every identity once, K images)"),
    Pin("sampler.last_batch", "drop", "main_imgreid.py:61-65 (drop_last=True)"),
    Pin("batches per Market epoch", 46, "main_imgreid.py:61-65 (751 identities, 16 per batch)"),
    Pin("optimizer.name", "adam", f"{SH}:34 (--opt adam); main_imgreid.py:155-158"),
    Pin("optimizer.lr", BASE, "main_imgreid.py:165 (base_lr=0.0008)"),
    Pin("optimizer.weight_decay", 5e-4, "main_imgreid.py:232"),
    Pin("optimizer.betas", [0.9, 0.999], "main_imgreid.py:156-158 (Adam defaults)"),
    Pin("optimizer.amsgrad", False, "main_imgreid.py:156-158"),
    Pin("optimizer.lr_mults", {}, "main_imgreid.py:171-173 (every group at lr)"),
    Pin("lr@0", 8e-6, LR),
    Pin("lr@10", 8e-6 + (BASE - 8e-6) * 10 / 20, LR),
    Pin("lr@19", 8e-6 + (BASE - 8e-6) * 19 / 20, LR),
    Pin("lr@20", BASE, LR),
    Pin("lr@79", BASE, LR),
    *[Pin(f"lr@{e}", BASE * 0.5 ** k, f"{LR} (step={list(range(80, 361, 40))}, factor 0.5)")
      for k, e in enumerate(range(80, 361, 40), start=1)],
    Pin("lr@599", BASE * 0.5 ** 8, f"{LR} (constant 3.125e-6 after the last step)"),
    Pin("train.epochs", 600, f"{SH}:10 (NUM_EPOCHS=600)"),
    Pin("losses.ce.epsilon", 0.1, "reid/loss/loss_set.py:156; main_imgreid.py:133"),
    Pin("losses.ce.weight", 1.0, "reid/img_trainers.py:96"),
    Pin("losses.ce.input", "logits", "reid/img_trainers.py:93"),
    Pin("losses.triplet.margin", 0.3, "main_imgreid.py:224"),
    Pin("losses.triplet.weight", 1.0, "reid/img_trainers.py:96"),
    Pin("losses.triplet.input", "features", "reid/img_trainers.py:94 (outputs[0]: before the BN)"),
    Pin("losses.triplet.metric", "euclidean", "reid/loss/loss_set.py:114"),
    Pin("losses.triplet.soft_margin", False, "reid/loss/loss_set.py:117-118"),
    Pin("test.flip", False, "reid/img_evaluators.py:136,142-146; main_imgreid.py:123"),
    Pin("test.normalize", True, "main_imgreid.py:128 (metric cosine)"),
    Pin("test.metric", "cosine", "main_imgreid.py:128"),
    Pin("test.rerank", False, "main_imgreid.py:127 (eval_worerank)"),
    Pin("train.shards", 2, f"{SH}:11 (NUM_GPU=2); main_imgreid.py:120 (DataParallel)"),
    Pin("train.eval_period", 0, f"{SH}:47-48 (the epoch-600 checkpoint)"),
]


def test_market_recipe_is_the_release():
    check(market(NET), PINS)


def test_fidelity_doc_shows_these_pins():
    check_doc(NET, PINS)

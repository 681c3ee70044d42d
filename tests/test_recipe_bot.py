"""BoT's Market-1501 recipe pinned to its release (michuanhaohao/reid-strong-baseline; the README's
94.1 / 85.7 row "+BNNeck" is Experiment-all_tricks-without_center-market.sh, i.e.
configs/softmax_triplet.yml over config/defaults.py). Each value cites the release's file:line."""
from __future__ import annotations

import torch
from recipes import Pin, check, check_doc, market

NET = "bot"
YML = "configs/softmax_triplet.yml"
# lr: WarmupMultiStepLR(base 3.5e-4, warmup factor 0.01 over 10, x0.1 at 40, 70), stepped at the start of
# every epoch; under the PyTorch of the release (<= 1.0: the constructor leaves last_epoch at -1)
# 0-based epoch e runs at index e
LR = "solver/lr_scheduler.py:43-56, engine/trainer.py:172-174"
PINS = [
    Pin("model.name", "bot", "modeling/baseline.py (Baseline: backbone, GAP, BNNeck, classifier)"),
    Pin("model.backbone.name", "resnet50", "config/defaults.py:25"),
    Pin("model.backbone.last_stride", 1, "config/defaults.py:27"),
    Pin("model.backbone.stem_relu", False, "modeling/backbones/resnet.py:97,125 (the stem's relu commented out)"),
    Pin("model.backbone.pretrained", True, f"{YML}:2 (PRETRAIN_CHOICE imagenet)"),
    Pin("model.pooling", "avg", "modeling/baseline.py:134 (AdaptiveAvgPool2d)"),
    Pin("model.neck", "bnneck", "config/defaults.py:34"),
    Pin("model.neck_feat", "after", f"{YML}:62"),
    Pin("input.size", [256, 128], f"{YML}:12-13"),
    Pin("input.interpolation", "bilinear", "data/transforms/build.py:16 (T.Resize default)"),
    Pin("input.pixel_mean", [0.485, 0.456, 0.406], "config/defaults.py:60"),
    Pin("input.pixel_std", [0.229, 0.224, 0.225], "config/defaults.py:62"),
    Pin("augment.flip_prob", 0.5, f"{YML}:14"),
    Pin("augment.crop", "pad", "data/transforms/build.py:18-19 (T.Pad + T.RandomCrop)"),
    Pin("augment.pad", 10, f"{YML}:16"),
    Pin("augment.color_jitter.prob", 0.0, "data/transforms/build.py:15-23 (no jitter)"),
    Pin("augment.erasing.prob", 0.5, f"{YML}:15"),
    Pin("augment.erasing.area", [0.02, 0.4], "data/transforms/transforms.py:23 (sl, sh)"),
    Pin("augment.erasing.aspect", 0.3, "data/transforms/transforms.py:23 (r1)"),
    Pin("augment.erasing.attempts", 100, "data/transforms/transforms.py:35"),
    Pin("augment.erasing.fill", "constant", "data/transforms/build.py:22 (mean=PIXEL_MEAN after Normalize)"),
    Pin("augment.erasing.fill_value", [0.485, 0.456, 0.406], "data/transforms/build.py:22, config/defaults.py:60"),
    Pin("sampler.num_ids", 16, f"{YML}:45 (64 images) / {YML}:23"),
    Pin("sampler.num_instances", 4, f"{YML}:23"),
    Pin("sampler.epoch", "images", "data/samplers/triplet_sampler.py:45-59 (chunks of K over every image)"),
    Pin("sampler.exhausted", "stop", "data/samplers/triplet_sampler.py:63 (182-184 batches on Market)"),
    Pin("optimizer.name", "adam", f"{YML}:27"),
    Pin("optimizer.lr", 3.5e-4, f"{YML}:29"),
    Pin("optimizer.weight_decay", 5e-4, f"{YML}:43"),
    Pin("optimizer.bias_weight_decay", True, f"{YML}:44 (WEIGHT_DECAY_BIAS 0.0005); BIAS_LR_FACTOR 1: {YML}:42"),
    Pin("optimizer.betas", [0.9, 0.999], "solver/build.py:24 (torch.optim.Adam defaults)"),
    Pin("optimizer.amsgrad", False, "solver/build.py:24"),
    Pin("lr@0", 3.5e-6, f"{LR}; {YML}:50 (WARMUP_FACTOR 0.01)"),
    Pin("lr@9", 3.5e-4 * (0.01 * 0.1 + 0.9), f"{LR}; {YML}:51 (WARMUP_ITERS 10)"),
    Pin("lr@10", 3.5e-4, LR),
    Pin("lr@39", 3.5e-4, LR),
    Pin("lr@40", 3.5e-5, f"{LR}; {YML}:47"),
    Pin("lr@69", 3.5e-5, LR),
    Pin("lr@70", 3.5e-6, f"{LR}; {YML}:47"),
    Pin("lr@119", 3.5e-6, LR),
    Pin("train.epochs", 120, f"{YML}:28"),
    Pin("losses.ce.epsilon", 0.1, f"{YML}:5, layers/triplet_loss.py:129"),
    Pin("losses.ce.weight", 1.0, "layers/__init__.py:35 (xent + triplet)"),
    Pin("losses.ce.input", "logits", "layers/__init__.py:35 (score)"),
    Pin("losses.triplet.margin", 0.3, "config/defaults.py:101"),
    Pin("losses.triplet.weight", 1.0, "layers/__init__.py:35"),
    Pin("losses.triplet.input", "features", "layers/__init__.py:35 (feat: the pooled feature before the BNNeck)"),
    Pin("losses.triplet.metric", "euclidean", "layers/triplet_loss.py (euclidean_dist)"),
    Pin("losses.triplet.soft_margin", False, "layers/triplet_loss.py (MarginRankingLoss with margin)"),
    Pin("test.normalize", True, f"{YML}:63"),
    Pin("test.norm_parts", 1, "utils/reid_metric.py:35-36 (the whole feature)"),
    Pin("test.metric", "cosine", "utils/reid_metric.py:47-49 (Euclidean on L2-normalised features: cosine's ranking)"),
    Pin("test.flip", False, "engine/inference.py (one view)"),
    Pin("test.rerank", False, f"{YML}:60"),
    Pin("train.shards", 1, "Experiment-all_tricks-without_center-market.sh:11 (one GPU)"),
    Pin("train.eval_period", 0, "Test-all_tricks-without_center-feat_after_bn-cos-market.sh:12 (reports the final, "
                                "epoch-120 model)"),
]


def test_market_recipe_is_the_release():
    check(market(NET), PINS)


def test_bnneck_init_is_the_release():
    """modeling/baseline.py:145-151: BN weight 1, bias 0 and frozen; classifier without bias, N(0, 0.001)."""
    from reid.models.heads import BNNeckHead

    torch.manual_seed(0)
    head = BNNeckHead(2048, 751)
    assert bool((head.bn.weight == 1).all()) and bool((head.bn.bias == 0).all()) and not head.bn.bias.requires_grad
    assert head.classifier.bias is None
    assert abs(float(head.classifier.weight.detach().std()) - 0.001) < 2e-5


def test_fidelity_doc_shows_these_pins():
    check_doc(NET, PINS)

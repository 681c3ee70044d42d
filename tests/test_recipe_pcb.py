"""PCB's Market-1501 recipe pinned to its release (syfafterzy/PCB_RPP_for_reID: train_PCB.sh running
PCB.py with reid/models/resnet.py). Each value cites the release's file:line."""
from __future__ import annotations

import torch
from recipes import Pin, check, check_doc, market

NET = "pcb"
SH = "train_PCB.sh:1"
LR = "PCB.py:136-140 (lr x 0.1 ** (epoch // step_size), 0-based epochs)"
BRANCH = "model.branches[0]"
PINS = [
    Pin("model.backbone.name", "resnet50", f"{SH} (-a resnet50)"),
    Pin("model.backbone.last_stride", 1, "reid/models/resnet.py:37-40 (layer4 stride 1)"),
    Pin("model.trunk", "layer4", "reid/models/resnet.py:118-121 (the whole backbone, then the stripes)"),
    Pin(f"{BRANCH}.stripes", 6, "reid/models/resnet.py:129-131, 142"),
    Pin(f"{BRANCH}.pooling", "avg", "reid/models/resnet.py:131 (avg_pool2d)"),
    Pin(f"{BRANCH}.global_feature", False, "reid/models/resnet.py:126-156 (stripes only)"),
    Pin(f"{BRANCH}.head.name", "conv_reduction", "reid/models/resnet.py:46,49,137-140 (1x1 conv, BN, ReLU)"),
    Pin(f"{BRANCH}.head_dim", 256, f"{SH} (--feature 256)"),
    Pin(f"{BRANCH}.shared_reduction", True, "reid/models/resnet.py:46,49 (one local_conv, one feat_bn2d)"),
    Pin(f"{BRANCH}.head.input_dropout", 0.5, "reid/models/resnet.py:83,136; PCB.py:181 (--dropout 0.5)"),
    Pin(f"{BRANCH}.neck_feat", "before", "reid/models/resnet.py:135 (out0: the pooled stripes)"),
    Pin(f"{BRANCH}.triplet", False, "PCB.py:115 (CE only)"),
    Pin(f"{BRANCH}.stripe_triplet", False, "PCB.py:115 (CE only)"),
    Pin("model.init", "default", "reid/models/resnet.py:46-81 (conv fan_out, BN 1 / 0, classifiers N(0, 0.001))"),
    Pin("input.size", [384, 128], f"{SH} (--height 384 --width 128)"),
    Pin("input.interpolation", "bilinear", "reid/utils/data/transforms.py:10 (RectScale)"),
    Pin("input.pixel_mean", [0.485, 0.456, 0.406], "PCB.py:26"),
    Pin("input.pixel_std", [0.229, 0.224, 0.225], "PCB.py:27"),
    Pin("augment.crop", "none", "PCB.py:31-36 (RectScale, flip, ToTensor, Normalize)"),
    Pin("augment.flip_prob", 0.5, "PCB.py:33"),
    Pin("augment.color_jitter.prob", 0.0, "PCB.py:31-36"),
    Pin("augment.erasing.prob", 0.0, "PCB.py:31-36"),
    Pin("sampler.epoch", "images", "PCB.py:44-48 (a shuffled pass over the images; P x K here: see the PCB table)"),
    Pin("optimizer.name", "sgd", "PCB.py:127"),
    Pin("optimizer.lr", 0.1, "PCB.py:183"),
    Pin("optimizer.momentum", 0.9, "PCB.py:186"),
    Pin("optimizer.nesterov", True, "PCB.py:127-130"),
    Pin("optimizer.weight_decay", 5e-4, "PCB.py:187"),
    Pin("optimizer.bias_weight_decay", True, "PCB.py:127-130 (one weight decay for every parameter)"),
    Pin("optimizer.lr_mults", {"backbone": 0.1}, "PCB.py:118-124"),
    Pin("lr@0", 0.1, LR),
    Pin("lr@39", 0.1, LR),
    Pin("lr@40", 0.01, f"{LR}; {SH} (--step-size 40)"),
    Pin("lr@59", 0.01, LR),
    Pin("train.epochs", 60, f"{SH} (--epochs 60)"),
    Pin("losses.ce.epsilon", 0.0, "PCB.py:115 (nn.CrossEntropyLoss)"),
    Pin("losses.ce.weight", 1.0, "reid/trainers_partloss.py:40"),
    Pin("losses.ce.reduce", "sum", "reid/trainers_partloss.py:40 (backward of the 6 losses with weight 1)"),
    Pin("losses.ce.input", "logits", "reid/trainers_partloss.py:78-83"),
    Pin("test.normalize", True, "reid/models/resnet.py:135"),
    Pin("test.norm_parts", 6, "reid/models/resnet.py:135 (x / x.norm(2, 1): each stripe on its own)"),
    Pin("test.metric", "sqeuclidean", "reid/evaluators.py:57-60"),
    Pin("test.flip", False, "reid/feature_extraction/cnn.py:14-15"),
    Pin("test.rerank", False, "reid/evaluators.py:63-104"),
    Pin("train.shards", 2, f"{SH} (CUDA_VISIBLE_DEVICES=2,3, -b 64); PCB.py:104 (DataParallel)"),
    Pin("train.eval_period", 0, "PCB.py:153-157 (the model after the last epoch)"),
]


def test_market_recipe_is_the_release():
    check(market(NET), PINS)


def test_conv_reduction_init_is_the_release():
    """reid/models/resnet.py:46-56: local_conv kaiming fan_out, BN weight 1 bias 0; classifiers N(0, 0.001), bias 0."""
    from reid.models.heads import ConvReductionHead

    torch.manual_seed(0)
    head = ConvReductionHead(2048, 751, 256)
    conv, bn = head.reduction[0], head.reduction[1]
    assert conv.bias is None and abs(float(conv.weight.detach().std()) / (2 / 256) ** 0.5 - 1) < 0.02  # fan_out = 256
    assert bool((bn.weight == 1).all()) and bool((bn.bias == 0).all())
    assert abs(float(head.classifier.weight.detach().std()) - 0.001) < 3e-5 and bool((head.classifier.bias == 0).all())


def test_fidelity_doc_shows_these_pins():
    check_doc(NET, PINS)

"""LAG-Net's Market-1501 recipe pinned to its release (SWJTU-3DVision/LAG-Net: lagnet/demo.sh:1,
the README's command, over lagnet/option.py). Each value cites the release's file:line (paths under
lagnet/)."""
from __future__ import annotations

from recipes import Pin, check, check_doc, market

NET = "lagnet"
RUN = "demo.sh:1"
# the MultiStepLR is stepped at the start of train(), as MGN-pytorch: under PyTorch <= 1.0 0-based epoch e
# runs at index e and the loop runs 600 epochs (under >= 1.1: one epoch ahead, 599; docs/fidelity.md)
LR = "trainer.py:42-45, utils/utility.py (make_scheduler: MultiStepLR)"
PINS = [
    Pin("model.name", "lagnet", "model/lag.py (LAG)"),
    Pin("model.backbone.name", "resnet50", "model/lag.py:80-107"),
    Pin("model.num_parts", 24, "option.py:32 (--num_attentions 24)"),
    Pin("model.las_pooling", "add", "model/lag.py (attention pooling by addition)"),
    Pin("model.embed_dim", 512, "model/lag.py:136-143 (FcWeight num_bottleneck=512)"),
    Pin("model.triplet_dim", 256, "option.py:28 (--feats 256); model/lag.py:123"),
    Pin("model.stripes", 3, "model/lag.py:114,120 ((3, 1) pooling)"),
    Pin("model.part_triplet", "head", "model/lag.py (the 768-D variable overwritten by the ps head's feature)"),
    Pin("model.init", "lagnet", "model/lag.py:123-125 (_init_reduction), FcWeight init"),
    Pin("model.same_init", True, "model/lag.py:123-132 (one reduction deep-copied 7x)"),
    Pin("input.size", [384, 128], "option.py:29-30"),
    Pin("input.interpolation", "bicubic", "data/__init__.py:11,22 (interpolation=3)"),
    Pin("input.pixel_mean", [0.485, 0.456, 0.406], "data/__init__.py:14"),
    Pin("input.pixel_std", [0.229, 0.224, 0.225], "data/__init__.py:14"),
    Pin("augment.crop", "none", "data/__init__.py:10-17 (Resize, flip, erasing)"),
    Pin("augment.flip_prob", 0.5, "data/__init__.py:12"),
    Pin("augment.color_jitter.prob", 0.0, "data/__init__.py:10-17"),
    Pin("augment.erasing.prob", 0.5, f"option.py:54; {RUN} (--random_erasing)"),
    Pin("augment.erasing.area", [0.02, 0.4], "utils/random_erasing.py (sl 0.02, sh 0.4)"),
    Pin("augment.erasing.aspect", 0.3, "utils/random_erasing.py (r1 0.3)"),
    Pin("augment.erasing.attempts", 100, "utils/random_erasing.py (range(100))"),
    Pin("augment.erasing.fill", "mean", "data/__init__.py:17 (mean=[0, 0, 0] after Normalize)"),
    Pin("sampler.num_ids", 8, f"{RUN} (--batchid 8)"),
    Pin("sampler.num_instances", 4, "option.py:18"),
    Pin("sampler.epoch", "identities", "data/sampler.py (MGN-pytorch's RandomSampler)"),
    Pin("sampler.last_batch", "keep", "data/__init__.py:30-34 (no drop_last)"),
    Pin("batches per Market epoch", 94, "data/__init__.py:30-34 (751 identities, 8 per batch)"),
    Pin("optimizer.name", "adam", f"{RUN} (--optimizer ADAM)"),
    Pin("optimizer.lr", 2e-4, f"{RUN} (--lr 2e-4)"),
    Pin("optimizer.amsgrad", True, f"{RUN} (--amsgrad)"),
    Pin("optimizer.betas", [0.9, 0.999], "option.py:41-42"),
    Pin("optimizer.weight_decay", 5e-4, "option.py:46"),
    Pin("optimizer.lr_mults", {}, "utils/utility.py (make_optimizer: one learning rate)"),
    Pin("lr@0", 2e-4, LR),
    Pin("lr@319", 2e-4, LR),
    Pin("lr@320", 2e-5, f"{LR}; {RUN} (--decay_type step_320_380_420)"),
    Pin("lr@380", 2e-6, LR),
    Pin("lr@420", 2e-7, LR),
    Pin("lr@599", 2e-7, LR),
    Pin("train.epochs", 600, f"{RUN} (--epochs 600); trainer.py:142-148, main.py:18"),
    Pin("losses.ce.epsilon", 0.0, "loss/__init__.py:29-30 (nn.CrossEntropyLoss)"),
    Pin("losses.ce.weight", 1.0, f"{RUN} (1*CrossEntropy)"),
    Pin("losses.ce.reduce", "mean", "loss/__init__.py:79-80 (mean over the 7 logits)"),
    Pin("losses.triplet.weight", 2.0, f"{RUN} (2*Triplet)"),
    Pin("losses.triplet.margin", 1.2, f"{RUN} (--margin 1.2)"),
    Pin("losses.triplet.reduce", "mean", "loss/__init__.py:67-69 (mean over outputs[2:7])"),
    Pin("losses.triplet.metric", "euclidean", "loss/triplet.py"),
    Pin("losses.attention_reg.weight", 1.0, f"{RUN} (1*L2)"),
    Pin("losses.attention_reg.alpha", 0.05, "option.py:34 (--L2_beta 5e-2); trainer.py:60"),
    Pin("losses.attention_reg.update", "last", "trainer.py:59-60 (feature_center[labels] += ...: index assignment)"),
    Pin("test.flip", True, "trainer.py:118-131"),
    Pin("test.normalize", True, "trainer.py:134-135"),
    Pin("test.metric", "euclidean", "trainer.py:94 (cdist)"),
    Pin("test.rerank", False, f"{RUN} (no --re_rank)"),
    Pin("train.shards", 1, f"{RUN} (--nGPU 1)"),
]


def test_market_recipe_is_the_release():
    check(market(NET), PINS)


def test_fidelity_doc_shows_these_pins():
    check_doc(NET, PINS)

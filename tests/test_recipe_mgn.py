"""MGN's Market-1501 recipe pinned to its release (seathiefwang/MGN-pytorch: its best documented
run, demo.sh:50, over option.py's defaults). Each value cites the release's file:line."""
from __future__ import annotations

from recipes import Pin, check, check_doc, market

NET = "mgn"
RUN = "demo.sh:50"
# the MultiStepLR is stepped at the start of train(); under the PyTorch of the release (0.4: the
# constructor leaves last_epoch at -1) 0-based epoch e runs at index e and the loop runs 400 epochs
# (demo.sh:49: "Best ... @epoch 400", the 8th test of --test_every 50)
LR = "trainer.py:33-36, utils/utility.py:135-150"
B = "model.branches"
PINS = [
    Pin("model.name", "multibranch", "model/mgn.py:12-152 (MGN)"),
    Pin("model.backbone.name", "resnet50", "model/mgn.py:18"),
    Pin("model.trunk", "layer3[0]", "model/mgn.py:20-28"),
    Pin("model.init", "mgn", "model/mgn.py:89-105 (_init_reduction: fan_in, BN N(1, 0.02); _init_fc: fan_out, bias 0)"),
    Pin("model.same_init", True, "model/mgn.py:56-66 (one reduction deep-copied to all eight)"),
    Pin(f"{B}[0].stride", 2, "model/mgn.py:33 (p1 keeps layer4's stride 2)"),
    Pin(f"{B}[1].stride", 1, "model/mgn.py:35-38 (p2: Bottleneck without stride)"),
    Pin(f"{B}[2].stride", 1, "model/mgn.py:35-38 (p3)"),
    Pin(f"{B}[1].stripes", 2, "model/mgn.py:53,117-119"),
    Pin(f"{B}[2].stripes", 3, "model/mgn.py:54,121-124"),
    Pin(f"{B}[0].pooling", "avg", "option.py:25 (--pool avg; demo.sh:50 keeps it); model/mgn.py:43-46"),
    Pin(f"{B}[1].pooling", "avg", "option.py:25"),
    Pin(f"{B}[2].pooling", "avg", "option.py:25"),
    Pin(f"{B}[0].head", "conv_reduction", "model/mgn.py:56 (Conv1x1 no bias, BN, ReLU)"),
    Pin(f"{B}[0].head_dim", 256, "option.py:26 (--feats 256)"),
    Pin(f"{B}[1].stripe_triplet", False, "loss/__init__.py:59-60 (triplet on outputs[1:4]: the global features)"),
    Pin(f"{B}[2].stripe_triplet", False, "loss/__init__.py:59-60"),
    Pin("input.size", [384, 128], "option.py:27-28"),
    Pin("input.interpolation", "bicubic", "data/__init__.py:11,22 (interpolation=3)"),
    Pin("input.pixel_mean", [0.485, 0.456, 0.406], "data/__init__.py:14"),
    Pin("input.pixel_std", [0.229, 0.224, 0.225], "data/__init__.py:14"),
    Pin("augment.crop", "none", "data/__init__.py:10-17 (Resize, flip, erasing)"),
    Pin("augment.flip_prob", 0.5, "data/__init__.py:12"),
    Pin("augment.color_jitter.prob", 0.0, "data/__init__.py:10-17"),
    Pin("augment.erasing.prob", 0.5, f"option.py:49; {RUN} (--random_erasing)"),
    Pin("augment.erasing.area", [0.02, 0.4], "utils/random_erasing.py:23"),
    Pin("augment.erasing.aspect", 0.3, "utils/random_erasing.py:23"),
    Pin("augment.erasing.attempts", 100, "utils/random_erasing.py:35"),
    Pin("augment.erasing.fill", "mean", "data/__init__.py:17 (mean=[0, 0, 0] after Normalize)"),
    Pin("sampler.num_ids", 16, f"{RUN} (--batchid 16)"),
    Pin("sampler.num_instances", 4, "option.py:17 (--batchimage 4)"),
    Pin("sampler.epoch", "identities", "data/sampler.py:18-25 (every identity once, K images)"),
    Pin("sampler.last_batch", "keep", "data/__init__.py:30-34 (DataLoader without drop_last)"),
    Pin("batches per Market epoch", 47, "data/sampler.py:27-28 (751 x 4 images / 64)"),
    Pin("optimizer.name", "adam", f"{RUN} (--optimizer ADAM)"),
    Pin("optimizer.lr", 2e-4, f"{RUN} (--lr 2e-4)"),
    Pin("optimizer.amsgrad", True, f"{RUN} (--amsgrad); utils/utility.py:113"),
    Pin("optimizer.betas", [0.9, 0.999], "option.py:37-38"),
    Pin("optimizer.weight_decay", 5e-4, "option.py:42; utils/utility.py:131"),
    Pin("optimizer.lr_mults", {}, "utils/utility.py:97-132 (one learning rate)"),
    Pin("lr@0", 2e-4, LR),
    Pin("lr@319", 2e-4, LR),
    Pin("lr@320", 2e-5, f"{LR}; {RUN} (--decay_type step_320_380)"),
    Pin("lr@379", 2e-5, LR),
    Pin("lr@380", 2e-6, LR),
    Pin("lr@399", 2e-6, LR),
    Pin("train.epochs", 400, f"{RUN} (--epochs 400); trainer.py:122-128, main.py:18; demo.sh:49"),
    Pin("losses.ce.epsilon", 0.0, "loss/__init__.py:25-26 (nn.CrossEntropyLoss)"),
    Pin("losses.ce.weight", 1.0, f"{RUN} (1*CrossEntropy)"),
    Pin("losses.ce.reduce", "mean", "loss/__init__.py:66-68 (mean over the 8 logits)"),
    Pin("losses.triplet.weight", 2.0, f"{RUN} (2*Triplet)"),
    Pin("losses.triplet.margin", 1.2, f"{RUN} (--margin 1.2)"),
    Pin("losses.triplet.reduce", "mean", "loss/__init__.py:59-62 (mean over the 3 global features)"),
    Pin("losses.triplet.metric", "euclidean", "loss/triplet.py (batch-hard, Euclidean)"),
    Pin("losses.triplet.soft_margin", False, "loss/triplet.py (MarginRankingLoss)"),
    Pin("test.flip", True, "trainer.py:100-113 (image + mirror)"),
    Pin("test.normalize", True, "trainer.py:116-117"),
    Pin("test.norm_parts", 1, "trainer.py:116-117 (the whole 2,048-D feature)"),
    Pin("test.metric", "cosine", "trainer.py:76 (cdist on L2-normalised features: cosine's ranking)"),
    Pin("train.shards", 2, f"{RUN} (--nGPU 2); model/__init__.py:19-20 (DataParallel)"),
]


def test_market_recipe_is_the_release():
    check(market(NET), PINS)


def test_fidelity_doc_shows_these_pins():
    check_doc(NET, PINS)

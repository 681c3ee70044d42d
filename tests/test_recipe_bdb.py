"""BDB's Market-1501 recipe pinned to its release (daizuozhuo/batch-dropblock-network: the README's
Market command, README.md:84-86, over config.py's defaults). Each value cites the release's file:line."""
from __future__ import annotations

from recipes import Pin, check, check_doc, market

NET = "bdb"
RUN = "README.md:84"
LR = "main_reid.py:146-163 (adjust_lr(epoch + 1))"
PINS = [
    Pin("model.name", "bdb", "models/networks.py:142-210 (BFE)"),
    Pin("model.backbone.name", "resnet50", "models/networks.py:145-152"),
    Pin("model.backbone.last_stride", 1, "config.py:35"),
    Pin("model.height_ratio", 0.33, "main_reid.py:92 (BFE(num_classes, 1.0, 0.33))"),
    Pin("model.width_ratio", 1.0, "main_reid.py:92"),
    Pin("model.global_dim", 512, "models/networks.py:164-166"),
    Pin("model.drop_dim", 1024, "models/networks.py:181-183"),
    Pin("model.neck", "none", "models/networks.py:171,187 (plain Linear classifiers)"),
    Pin("model.init", "bdb", "models/networks.py:172-188 (weights_init_kaiming)"),
    Pin("input.size", [384, 128], "utils/transforms.py:58"),
    Pin("input.interpolation", "bilinear", "utils/transforms.py:58 (T.Resize default)"),
    Pin("input.pixel_mean", [0.485, 0.456, 0.406], "utils/transforms.py:80"),
    Pin("input.pixel_std", [0.229, 0.224, 0.225], "utils/transforms.py:80"),
    Pin("augment.crop", "none", "utils/transforms.py:57-58 (resize only)"),
    Pin("augment.flip_prob", 0.5, "utils/transforms.py:78"),
    Pin("augment.color_jitter.prob", 0.0, "utils/transforms.py:52-85"),
    Pin("augment.erasing.prob", 0.5, "utils/transforms.py:82 (Cutout probability 0.5)"),
    Pin("augment.erasing.area", [64 * 64 / (384 * 128)] * 2, "utils/transforms.py:82 (one 64 x 64 square)"),
    Pin("augment.erasing.aspect", 1.0, "utils/random_erasing.py:22-23 (h = w = size)"),
    Pin("augment.erasing.fill", "mean", "utils/transforms.py:82 (mean=[0, 0, 0] after Normalize)"),
    Pin("sampler.num_ids", 32, f"{RUN} (--train_batch=128) / config.py:27 (4)"),
    Pin("sampler.num_instances", 4, "config.py:27"),
    Pin("sampler.epoch", "identities", "datasets/samplers.py:22-33 (every identity once, K images)"),
    Pin("sampler.last_batch", "drop", "main_reid.py:55-59 (drop_last=True)"),
    Pin("batches per Market epoch", 23, "main_reid.py:55-59 (751 identities, 32 per batch)"),
    Pin("optimizer.name", "adam", f"{RUN} (--optim=adam); main_reid.py:139"),
    Pin("optimizer.weight_decay", 5e-4, "config.py:23"),
    Pin("optimizer.betas", [0.9, 0.999], "main_reid.py:139 (Adam defaults)"),
    Pin("optimizer.lr_mults", {}, "main_reid.py:155-156 (every group at lr)"),
    Pin("lr@0", 1e-4, LR),
    Pin("lr@3", 1e-4, LR),
    Pin("lr@4", 2e-4, LR),
    Pin("lr@43", 9e-4, LR),
    Pin("lr@44", 1e-3, LR),
    Pin("lr@198", 1e-3, LR),
    Pin("lr@199", 1e-4, LR),
    Pin("lr@298", 1e-4, LR),
    Pin("lr@299", 1e-5, LR),
    Pin("lr@399", 1e-5, LR),
    Pin("train.epochs", 400, f"{RUN} (--max_epoch=400)"),
    Pin("losses.ce.epsilon", 0.1, "main_reid.py:120; utils/loss.py:136"),
    Pin("losses.ce.weight", 1.0, "main_reid.py:129-133 (the sum of every loss)"),
    Pin("losses.ce.reduce", "sum", "main_reid.py:129-133"),
    Pin("losses.triplet.soft_margin", True, "config.py:26 (margin None); utils/loss.py:106-111 (SoftMarginLoss)"),
    Pin("losses.triplet.weight", 1.0, "main_reid.py:129-133"),
    Pin("losses.triplet.reduce", "sum", "main_reid.py:129-133"),
    Pin("losses.triplet.input", "features", "main_reid.py:130 (triplet_y: the two reduced features)"),
    Pin("test.flip", False, "trainers/evaluator.py:45-46 (eval_flip=False)"),
    Pin("test.normalize", False, "trainers/evaluator.py:45-91 (raw features)"),
    Pin("test.metric", "sqeuclidean", "trainers/evaluator.py:89-91"),
    Pin("test.rerank", False, "config.py:31"),
    Pin("train.eval_period", 30, f"{RUN} (--eval_step=30); main_reid.py:167"),
    Pin("train.select_on", "test", "main_reid.py:167-175 (the query / gallery sets)"),
    Pin("train.select_metric", "rank1", "main_reid.py:172-175 (best rank-1)"),
    Pin("train.shards", 4, "README.md:86 (4 GTX1080 GPUs); main_reid.py:111 (DataParallel)"),
]


def test_market_recipe_is_the_release():
    check(market(NET), PINS)


def test_fidelity_doc_shows_these_pins():
    check_doc(NET, PINS)
